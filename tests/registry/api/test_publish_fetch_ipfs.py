"""Publish by CID against real js-ipfs peers: shards only ``add``ed to a peer end verified in the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pinner.ipfs.kubo import KuboClient
from pinner.states import NodeKind, NodeState
from registry.api.keys import BLOCKSTORE, JOB_QUEUE, SESSIONS, SHARD_FETCH
from registry.db.models import Blob, IpfsNode
from tests.ipfs_testnode.peers import IpfsPeer
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

pytestmark = [pytest.mark.ipfs, pytest.mark.slow]

SHARDS = [
    ("model-00001-of-00002.safetensors", helpers.shard_bytes(600_000, 11)),
    ("model-00002-of-00002.safetensors", helpers.shard_bytes(5_000, 12)),
]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_shards_added_to_a_peer_are_fetched_and_the_pack_becomes_available(
    reg: Registry, ipfs_peers: list[IpfsPeer]
) -> None:
    manifest = helpers.manifest(SHARDS)
    async with KuboClient(ipfs_peers[0].api_url) as node:
        for entry, (_, data) in zip(manifest["shards"], SHARDS, strict=True):
            added = await node.add(_once(data), cid_version=1, raw_leaves=True)
            entry["cid"] = str(added.cid)  # the registry re-derives it from the bytes with v1 parameters
    async with reg.client.app[SESSIONS]() as s, s.begin():
        s.add(IpfsNode(name="js0", kind=NodeKind.KUBO, url=ipfs_peers[0].api_url, state=NodeState.UP))

    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": manifest})
    assert r.status == 201, await r.text()
    out = await r.json()
    assert out["state"] == "received" and out["pointers"] == {}

    job = await reg.client.app[JOB_QUEUE].claim(["fetch"], "test")
    assert job is not None and job.dedupe_key == f"fetch:{out['cid']}"
    await reg.client.app[SHARD_FETCH].handle_fetch(job)

    detail = await (await reg.client.get(f"/v1/packs/{out['cid']}")).json()
    assert detail["state"] == "available"
    latest = await (await reg.client.get("/v1/models/acme/tiny/pointers/latest")).json()
    assert latest["cid"] == out["cid"]
    store = reg.client.app[BLOCKSTORE]
    async with reg.client.app[SESSIONS]() as s:
        for entry, (_, data) in zip(manifest["shards"], SHARDS, strict=True):
            cid = entry["cid"]
            blob = await s.get(Blob, cid)
            assert blob is not None and blob.size == len(data)
            assert "sha256:" + blob.sha256 == entry["sha256"] == "sha256:" + store.stat_file(cid).sha256_hex
            assert b"".join(store.iter_file_bytes(cid)) == data
