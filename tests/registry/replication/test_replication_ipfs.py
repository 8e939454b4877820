"""The replication service against three real js-ipfs peers (Kubo RPC): replicate, kill a peer mid-way,
lose pins across a restart, corrupt a block on disk. Each test uses bytes of its own, so tests sharing
the session peers never see each other's pins.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from multiformats import CID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.cids import normalize_cid
from pinner.replication.model import Target
from pinner.states import NodeState, ReplicaState
from pinner.unixfs.params import UnixfsParams
from registry.db.models import IpfsNode, Replica
from registry.jobs.sql import SqlJobQueue
from registry.replication.clients import ClientFactory, NodeClientConfig
from registry.replication.nodes import NodeRegistry
from registry.replication.rows import ReplicationConfig
from registry.replication.service import ReplicationService
from tests.ipfs_testnode.peers import IpfsPeer, restore_peers
from tests.registry.replication.conftest import FakeBackends, Harness

KUBO = UnixfsParams(cid_version=1, raw_leaves=True)  # `ipfs add --cid-version=1`: 256 KiB chunks
pytestmark = [pytest.mark.ipfs, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@dataclass
class Live:
    harness: Harness
    peers: list[IpfsPeer]

    async def pins(self, peer: IpfsPeer) -> set[str]:
        keys = (await asyncio.to_thread(peer.rpc, "pin/ls", type="recursive")).get("Keys") or {}
        return {normalize_cid(k) for k in keys}

    async def units(self, pack: str) -> set[str]:
        return {u.unit.cid for u in (await self.harness.service.pack_replication(pack)).units}


@pytest.fixture
async def live(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, ipfs_peers: list[IpfsPeer]
) -> AsyncIterator[Live]:
    kek = os.urandom(32)
    async with aiohttp.ClientSession() as http:
        factory = ClientFactory(http, kek, NodeClientConfig(request_timeout_s=5.0, pin_timeout_s=60.0))
        store = FsBlockstore(tmp_path / "blocks", FsBlockstoreConfig(fsync=False))
        registry = NodeRegistry(sessions, kek, allowed_hosts=("127.0.0.1",))
        queue = SqlJobQueue(sessions)
        service = ReplicationService(
            sessions,
            store,
            factory,
            queue,
            registry,
            ReplicationConfig(target=Target(2, 3), down_grace_s=0.0),
            rng=random.Random(3),
        )
        harness = Harness(sessions, store, FakeBackends(), queue, registry, service)
        for i, peer in enumerate(ipfs_peers):
            await registry.add(f"peer{i}", "kubo", peer.api_url, tags={"zone": f"z{i}"})
        await service.check_nodes()
        try:
            yield Live(harness, ipfs_peers)
        finally:
            restore_peers(ipfs_peers)  # from this thread: a peer dies with the thread that forked it


async def wait_for(cond: Callable[[], object], timeout: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():  # type: ignore[misc]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_pack_is_replicated_to_three_peers_and_passes_audit(live: Live) -> None:
    pack = await live.harness.make_pack(shards=3, size=300_000, params=KUBO)
    outcome = await live.harness.service.replicate_pack(pack)
    assert outcome.failed == {} and outcome.summary.satisfied and outcome.summary.min_pinned == 3
    units = await live.units(pack)
    for peer in live.peers:
        assert units <= await live.pins(peer)
    audit = await live.harness.service.upkeep.audit_batch()
    assert audit["lost"] == 0 and audit["ok"] >= 12
    again = await live.harness.service.replicate_pack(pack)
    assert again.pushed == {}  # every replica confirmed by pin/ls, nothing sent twice


async def test_peer_killed_mid_replication_is_marked_down_and_the_pack_ends_on_the_others(live: Live) -> None:
    pack = await live.harness.make_pack(shards=4, size=4_000_000, params=KUBO)
    victim = live.peers[2]
    task = asyncio.create_task(live.harness.service.replicate_pack(pack))

    async def pushing() -> bool:
        async with live.harness.sessions() as s:
            n = await s.execute(
                select(func.count())
                .select_from(Replica)
                .join(IpfsNode)
                .where(IpfsNode.name == "peer2", Replica.state == ReplicaState.PINNING)
            )
            return bool(n.scalar_one())

    await wait_for(pushing)
    await asyncio.to_thread(victim.kill)
    outcome = await task
    if "peer2" in outcome.pushed:  # the push beat the kill: then reconcile must find the node gone
        await live.harness.service.check_nodes()
    else:
        assert "peer2" in outcome.failed
    async with live.harness.sessions() as s:
        node = (await s.execute(select(IpfsNode).where(IpfsNode.name == "peer2"))).scalar_one()
    if node.state is not NodeState.DOWN:
        await live.harness.service.check_nodes()
    summary = await live.harness.service.pack_replication(pack)
    assert summary.satisfied and summary.min_pinned == 2
    units = await live.units(pack)
    for peer in live.peers[:2]:
        assert units <= await live.pins(peer)


async def test_restarted_peer_without_its_pins_is_noticed_by_reconcile_and_repinned(live: Live) -> None:
    pack = await live.harness.make_pack(shards=2, size=100_000, params=KUBO)
    await live.harness.service.replicate_pack(pack)
    peer = live.peers[1]
    units = await live.units(pack)
    for cid in units:
        await asyncio.to_thread(peer.rpc, "pin/rm", arg=cid)
    peer.restart()  # blocking, on purpose: the peer must be forked by the test's own thread
    restore_peers(live.peers)
    enqueued = await live.harness.service.reconciler.reconcile_all()
    assert pack in enqueued
    async with live.harness.sessions() as s:
        lost = set(
            (
                await s.execute(
                    select(Replica.cid)
                    .join(IpfsNode)
                    .where(IpfsNode.name == "peer1", Replica.state == ReplicaState.LOST)
                )
            ).scalars()
        )
    assert lost == units
    repaired = await live.harness.service.replicate_pack(pack)
    assert set(repaired.pushed) == {"peer1"} and repaired.summary.min_pinned == 3
    assert units <= await live.pins(peer)


def block_file(peer: IpfsPeer, cid: str) -> Path:
    """js-ipfs keeps a block at blocks/<shard>/<base32 multihash>.data."""
    key = base64.b32encode(bytes(CID.decode(cid).digest)).decode().rstrip("=")
    found = list((peer.repo / "blocks").rglob(f"{key}.data"))
    assert found, f"no block file for {cid} in {peer.repo}"
    return found[0]


async def test_corrupted_block_on_a_peer_fails_the_audit_and_the_replica_moves(live: Live) -> None:
    pack = await live.harness.make_pack(shards=1, size=40_000)
    async with live.harness.sessions() as s, s.begin():
        from sqlalchemy import update

        from registry.db.models import Model

        await s.execute(update(Model).values(replication_min=2, replication_max=2))
    outcome = await live.harness.service.replicate_pack(pack)
    holders = sorted(outcome.pushed)
    assert len(holders) == 2
    bad_peer = live.peers[int(holders[0][-1])]
    shard = next(u.unit.cid for u in outcome.summary.units if u.unit.kind == "shard")
    leaves = [c for c in await live.harness.service.upkeep.unit_blocks(shard) if c != shard]
    for leaf in leaves:  # every leaf, so any sample of the audit hits one
        path = block_file(bad_peer, leaf)
        path.write_bytes(b"\0" * len(path.read_bytes()))
    live.harness.service.upkeep.config = ReplicationConfig(
        target=Target(2, 2), down_grace_s=0.0, audit_sample_blocks=4
    )
    result = await live.harness.service.upkeep.audit_batch()
    assert result["lost"] == 1
    async with live.harness.sessions() as s:
        row = (
            await s.execute(
                select(Replica).join(IpfsNode).where(IpfsNode.name == holders[0], Replica.cid == shard)
            )
        ).scalar_one()
    assert row.state is ReplicaState.LOST and row.last_error and row.last_error.startswith("audit:")
    repaired = await live.harness.service.replicate_pack(pack)
    third = ({"peer0", "peer1", "peer2"} - set(holders)).pop()
    assert third in repaired.pushed and repaired.summary.satisfied and repaired.summary.min_pinned == 2
