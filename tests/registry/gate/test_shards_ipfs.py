"""Shard bytes from a real js-ipfs node when the blockstore lacks them: fetched, verified, then validated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from model_core.format.digest import Sha256Digest
from pinner.ipfs.kubo import KuboClient
from pinner.states import NodeKind, NodeState
from registry.db.models import IpfsNode
from registry.gate.runner import run_sandbox
from registry.gate.shards import ShardSpec, ShardUnavailable, gather
from registry.replication.clients import ClientFactory, NodeClientConfig
from registry.replication.shard_fetch import NodeShardFetcher
from tests.ipfs_testnode.peers import IpfsPeer
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv

pytestmark = [pytest.mark.ipfs, pytest.mark.slow]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_shards_come_from_an_ipfs_node_and_the_pack_validates(
    env: GateEnv, db_url: str, ipfs_peers: list[IpfsPeer], tmp_path: Path
) -> None:
    pack = packs.make_pack(tmp_path / "pack", seed=7)
    specs = []
    async with KuboClient(ipfs_peers[0].api_url) as node:
        for s in packs.manifest_of(pack)["shards"]:
            data = (pack / s["filename"]).read_bytes()
            added = await node.add(_once(data), cid_version=1, raw_leaves=True)
            assert str(added.cid) == s["cid"]
            specs.append(ShardSpec(s["filename"], s["cid"], Sha256Digest.parse(s["sha256"]), s["size"]))
    async with env.sessions() as sess, sess.begin():
        sess.add(IpfsNode(name="js0", kind=NodeKind.KUBO, url=ipfs_peers[0].api_url, state=NodeState.UP))
    manifest = (pack / "manifest.json").read_bytes()
    async with aiohttp.ClientSession() as http:
        fetcher = NodeShardFetcher(env.sessions, ClientFactory(http, bytes(32), NodeClientConfig()))
        got = await gather(tmp_path / "gathered", manifest, specs, None, fetcher, 60)
        wrong = [ShardSpec(specs[0].filename, specs[0].cid, Sha256Digest("0" * 64), specs[0].size)]
        with pytest.raises(ShardUnavailable, match="sha256"):
            await gather(tmp_path / "wrong", manifest, wrong, None, fetcher, 60)
    assert set(got.sources.values()) == {"node:js0"} and got.allowed_roots == ()
    for s in specs:
        assert (tmp_path / "gathered" / s.filename).read_bytes() == (pack / s.filename).read_bytes()
    report = await run_sandbox(tmp_path / "gathered", tmp_path / "r.json", env.gate.config.budget, ())
    assert report["verdict"] == "pass", report
