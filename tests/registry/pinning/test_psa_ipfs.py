"""PSA pins on real js-ipfs peers: content added to an outside peer is pinned on our nodes through its
origin; a CID nobody has stays queued/pinning with an honest info, then fails after the (short) deadline;
deleting a pin unpins it from our nodes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from tests.ipfs_testnode.peers import IpfsPeer
from tests.registry.api import helpers
from tests.registry.pinning.conftest import raw_cid
from tests.registry.pinning.livepins import PIN_TIMEOUT_S, Live, add_to, wait_for

pytestmark = [pytest.mark.ipfs, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


async def test_content_on_an_outside_peer_is_pinned_on_our_nodes_then_unpinned(
    live: Live, ipfs_peer_factory: Callable[[int], list[IpfsPeer]]
) -> None:
    (outside,) = await asyncio.to_thread(ipfs_peer_factory, 1)  # connected to none of our nodes
    data = os.urandom(50_000)
    cid = await add_to(outside, data)
    r = await live.client.post(
        "/psa/pins",
        json={"cid": cid, "origins": [outside.swarm_multiaddr]},
        headers=helpers.bearer(live.token),
    )
    assert r.status == 202, await r.text()
    rid = (await r.json())["requestid"]

    async def pinned() -> bool:
        return (await live.status(rid))["status"] == "pinned"

    await wait_for(pinned)
    for node in live.nodes:
        assert cid in await live.pinned_on(node)
    body = await live.status(rid)
    assert int(body["info"]["bytes"]) >= len(data)
    assert any(node.peer_id in d for d in body["delegates"] for node in live.nodes)

    r = await live.client.delete(f"/psa/pins/{rid}", headers=helpers.bearer(live.token))
    assert r.status == 202

    async def unpinned() -> bool:
        return all([cid not in await live.pinned_on(n) for n in live.nodes])

    await wait_for(unpinned)


async def test_a_cid_nobody_has_stays_pending_then_fails_after_the_deadline(live: Live) -> None:
    cid = raw_cid(os.urandom(16))
    r = await live.client.post("/psa/pins", json={"cid": cid}, headers=helpers.bearer(live.token))
    rid = (await r.json())["requestid"]
    first = await live.status(rid)
    assert first["status"] in ("queued", "pinning") and first["info"]["status_details"]

    async def failed() -> bool:
        return (await live.status(rid))["status"] == "failed"

    await wait_for(failed, timeout=PIN_TIMEOUT_S + 60)
    details = (await live.status(rid))["info"]["status_details"]
    assert details.startswith("failed:") and "deadline" in details
    for node in live.nodes:
        assert cid not in await live.pinned_on(node)
