"""Replace, delete and GC with PSA pins on real js-ipfs peers: a replaced pin's CID leaves the nodes only once
its successor has settled; a deleted pin's CID stays while another pin or a live pack needs it; a full GC run
collects a dead pack but keeps (on the nodes and in the blockstore) the shard a pin holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable

import pytest
from sqlalchemy import delete, select

from registry.api.keys import BLOCKSTORE, REPLICATION, SESSIONS
from registry.db.models import Pointer
from registry.db.pins import Pin
from tests.ipfs_testnode.peers import IpfsPeer
from tests.registry.api import helpers
from tests.registry.pinning.conftest import raw_cid
from tests.registry.pinning.livepins import Live, add_to, publish_v1, wait_for

pytestmark = [pytest.mark.ipfs, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
PENDING = ("queued", "pinning")


async def replace(live: Live, requestid: str, body: dict[str, object]) -> str:
    r = await live.client.post(f"/psa/pins/{requestid}", json=body, headers=helpers.bearer(live.token))
    assert r.status == 202, await r.text()
    return str((await r.json())["requestid"])


async def remove(live: Live, requestid: str, token: str | None = None) -> None:
    """DELETE the pin and wait until its job has settled it (its row is gone)."""
    r = await live.client.delete(f"/psa/pins/{requestid}", headers=helpers.bearer(token or live.token))
    assert r.status == 202, await r.text()

    async def gone() -> bool:
        async with live.client.app[SESSIONS]() as s:
            return (await s.execute(select(Pin.id).where(Pin.requestid == requestid))).first() is None

    await wait_for(gone)


async def test_replace_unpins_the_old_cid_only_once_the_new_pin_has_settled(
    live: Live, ipfs_peer_factory: Callable[[int], list[IpfsPeer]]
) -> None:
    (outside,) = await asyncio.to_thread(ipfs_peer_factory, 1)
    origin = [outside.swarm_multiaddr]
    old_cid = await add_to(outside, os.urandom(30_000))
    rid = await live.pin({"cid": old_cid, "origins": origin})
    await live.reaches(rid, "pinned")

    # Replaced by a CID nobody has: all the while the new pin is pending, the old CID stays on every node.
    pending = await replace(live, rid, {"cid": raw_cid(os.urandom(16))})
    assert (await live.status(pending))["status"] in PENDING
    assert await live.on_all(old_cid)
    assert (await live.status(pending))["status"] in PENDING  # so it was on them while the new one pended
    await live.reaches(pending, "failed")
    await wait_for(lambda: live.on_none(old_cid))  # settled (failed): the hidden old pin goes

    # Replaced by content an origin has: no moment where the old CID is off a node and the new not pinned.
    rid = await live.pin({"cid": old_cid, "origins": origin})
    await live.reaches(rid, "pinned")
    new_cid = await add_to(outside, os.urandom(30_000))
    new = await replace(live, rid, {"cid": new_cid, "origins": origin})
    while True:
        old_everywhere = await live.on_all(old_cid)  # nodes first, then the status (it only moves forward)
        status = (await live.status(new))["status"]
        assert old_everywhere or status == "pinned", "the old CID left a node before the new pin was pinned"
        if status == "pinned" and await live.on_none(old_cid):
            break
        await asyncio.sleep(0.05)
    assert await live.on_all(new_cid)
    assert (await live.status(rid))["error"]["reason"] == "NOT_FOUND"


async def test_delete_keeps_a_cid_another_pin_or_a_live_pack_needs_and_gc_keeps_a_pinned_shard(
    live: Live, ipfs_peer_factory: Callable[[int], list[IpfsPeer]]
) -> None:
    app = live.client.app
    bob = await helpers.token(app, "bob", scopes=("pin",))
    (outside,) = await asyncio.to_thread(ipfs_peer_factory, 1)
    shared = await add_to(outside, os.urandom(30_000))
    mine = await live.pin({"cid": shared, "origins": [outside.swarm_multiaddr]})
    theirs = await live.pin({"cid": shared, "origins": [outside.swarm_multiaddr]}, bob)
    await live.reaches(mine, "pinned")
    await live.reaches(theirs, "pinned", bob)
    await remove(live, mine)
    assert await live.on_all(shared)  # bob's pin still needs it
    await remove(live, theirs, bob)
    await wait_for(lambda: live.on_none(shared))  # nothing does now

    publisher = await helpers.token(app, "carol", ["acme"])
    shards = [(f"model-{i:05d}-of-00002.safetensors", os.urandom(40_000)) for i in range(2)]
    pack = await publish_v1(live.client, publisher, "m", shards)

    async def replicated() -> bool:
        m = await (await live.client.get(f"/v1/packs/{pack}/replicas")).json()
        return bool(m["satisfied"]) and all(u["pinned"] == 2 for u in m["units"])

    await wait_for(replicated)
    m = await (await live.client.get(f"/v1/packs/{pack}/replicas")).json()
    kept, dropped = sorted((u["cid"] for u in m["units"] if u["kind"] == "shard"), key=lambda c: c)
    held = await live.pin({"cid": kept})  # our nodes hold it already
    await live.reaches(held, "pinned")
    gone = await live.pin({"cid": dropped})
    await live.reaches(gone, "pinned")
    await remove(live, gone)
    assert await live.on_all(dropped)  # the live pack still needs it

    async with app[SESSIONS]() as s, s.begin():  # the pack is dead now: no pointer, no retention
        await s.execute(delete(Pointer).where(Pointer.pack_cid == pack))
    upkeep = app[REPLICATION].upkeep
    upkeep.config = dataclasses.replace(upkeep.config, gc_retention_s=0.0)
    result = await upkeep.collect_garbage()
    assert result["packs"] == 1 and result["units"] == 3  # two shards and the manifest selected
    assert await live.on_all(kept) and app[BLOCKSTORE].has(kept)  # the pin holds it
    assert await live.on_none(dropped) and not app[BLOCKSTORE].has(dropped)
    assert (await live.status(held))["status"] == "pinned"
