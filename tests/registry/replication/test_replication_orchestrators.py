"""Placement on IPFS Cluster and Pinning Service API nodes (the spec-following in-test servers), beside
Kubo nodes: orchestrators are asked after the Kubo wave, with the Kubo holders as origins; audits and
reconcile read their pin state; an orchestrator that fails a pin gets a failed replica with the reason.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.ipfs.http import BearerAuth
from pinner.ipfs.protocol import PinBackend
from pinner.replication.model import Target
from pinner.states import NodeKind, ReplicaState
from pinner.testing.orchestrators import FakeCluster, FakePinningService
from registry.db.models import IpfsNode, Replica
from registry.jobs.sql import SqlJobQueue
from registry.replication.clients import ClientFactory, NodeClientConfig
from registry.replication.nodes import NodeRegistry
from registry.replication.rows import ReplicationConfig
from registry.replication.service import ReplicationService
from tests.registry.replication.conftest import FakeBackends, Harness

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class MixedBackends:
    """Fakes for Kubo nodes, the real Cluster / Pinning Service clients for the in-test servers."""

    def __init__(self, fakes: FakeBackends, real: ClientFactory) -> None:
        self.fakes, self.real = fakes, real

    def backend(self, node: IpfsNode) -> PinBackend:
        return self.fakes.backend(node) if node.kind is NodeKind.KUBO else self.real.backend(node)


@pytest.fixture
async def mixed(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Any, aiohttp_server: Any
) -> AsyncIterator[tuple[Harness, FakeCluster, FakePinningService]]:
    kek = os.urandom(32)
    cluster, psa = FakeCluster(), FakePinningService()
    cluster_srv = await aiohttp_server(cluster.app())
    psa_srv = await aiohttp_server(psa.app())
    async with aiohttp.ClientSession() as http:
        fakes = FakeBackends()
        real = ClientFactory(
            http,
            kek,
            NodeClientConfig(poll_interval_s=0.01, pin_timeout_s=5, replication_min=2, replication_max=3),
        )
        registry = NodeRegistry(sessions, kek, allowed_hosts=("127.0.0.1",))
        store = FsBlockstore(tmp_path / "blocks", FsBlockstoreConfig(fsync=False))
        queue = SqlJobQueue(sessions)
        service = ReplicationService(
            sessions,
            store,
            MixedBackends(fakes, real),
            queue,
            registry,
            ReplicationConfig(target=Target(2, 4), down_grace_s=0.0),
            rng=random.Random(5),
        )
        h = Harness(sessions, store, fakes, queue, registry, service)
        await registry.add("cluster", "cluster", str(cluster_srv.make_url("/")))
        await registry.add("psa", "pinning-service", str(psa_srv.make_url("/")), auth=BearerAuth(psa.token))
        assert await service.check_nodes() == {"cluster": "up", "psa": "up"}
        yield h, cluster, psa


async def test_orchestrators_pin_from_the_kubo_holders(
    mixed: tuple[Harness, FakeCluster, FakePinningService],
) -> None:
    h, cluster, psa = mixed
    a, b = await h.add_fake("a"), await h.add_fake("b")
    pack = await h.make_pack(shards=2)
    outcome = await h.service.replicate_pack(pack)
    assert set(outcome.pushed) == {"a", "b", "cluster", "psa"} and outcome.failed == {}
    assert outcome.summary.satisfied and outcome.summary.min_pinned == 4
    units = {u.unit.cid for u in outcome.summary.units}
    assert {cid for _, cid, _ in cluster.requests} == units
    query = cluster.requests[0][2]
    assert query["replication-min"] == "2" and query["replication-max"] == "3"
    holders = {(await a.info()).addresses[0], (await b.info()).addresses[0]}
    assert set(query["origins"].split(",")) == holders
    assert {p["pin"]["cid"] for p in psa.pins.values()} == units  # type: ignore[index]
    audit = await h.service.upkeep.audit_batch()
    assert audit["lost"] == 0 and audit["ok"] == 4 * len(units)
    assert await h.service.reconciler.reconcile_all() == []


async def test_orchestrator_without_a_reachable_copy_fails_fast_then_succeeds(
    mixed: tuple[Harness, FakeCluster, FakePinningService],
) -> None:
    h, cluster, psa = mixed
    pack = await h.make_pack(shards=1)
    first = await h.service.replicate_pack(pack)  # no Kubo node holds the bytes: nothing to fetch from
    assert set(first.failed) == {"cluster", "psa"} and "no reachable copy" in first.failed["psa"]
    assert cluster.requests == [] and psa.posts == 0
    await h.add_fake("a")
    second = await h.service.replicate_pack(pack)
    assert set(second.pushed) == {"a", "cluster", "psa"} and second.summary.satisfied


async def test_a_failing_pinning_service_leaves_a_failed_replica_with_the_reason(
    mixed: tuple[Harness, FakeCluster, FakePinningService],
) -> None:
    h, _cluster, psa = mixed
    psa.fail = True
    await h.add_fake("a")
    pack = await h.make_pack(shards=1)
    outcome = await h.service.replicate_pack(pack)
    assert "pin_failed" in outcome.failed["psa"] and "fetch timed out" in outcome.failed["psa"]
    async with h.sessions() as s:
        rows = (await s.execute(select(Replica).join(IpfsNode).where(IpfsNode.name == "psa"))).scalars().all()
    assert {r.state for r in rows} == {ReplicaState.FAILED} and all(r.attempts == 1 for r in rows)
    assert outcome.summary.satisfied  # a and the cluster hold it: min 2 is met
