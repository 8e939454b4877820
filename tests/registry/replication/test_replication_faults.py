"""Nodes that misbehave on the wire, through the real Kubo RPC client: garbage answers and a node that
hangs. Each ends as a failed replica (or a down node) carrying the reason, and a retried job."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.replication.model import Target
from pinner.states import NodeState, ReplicaState
from registry.db.models import IpfsNode, Replica
from registry.jobs.protocol import ClaimedJob, RetryJob
from registry.jobs.sql import SqlJobQueue
from registry.replication.clients import ClientFactory, NodeClientConfig
from registry.replication.nodes import NodeRegistry
from registry.replication.rows import ReplicationConfig
from registry.replication.service import ReplicationService
from tests.registry.replication.conftest import FakeBackends, Harness

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

Route = Callable[[web.Request], Any]


def kubo_like(overrides: dict[str, Route]) -> web.Application:
    """Answers health calls like a sane node; `overrides` replace individual commands."""

    async def ok(request: web.Request) -> web.StreamResponse:
        cmd = request.match_info["cmd"]
        if cmd in overrides:
            return await overrides[cmd](request)
        if cmd == "id":
            return web.json_response({"ID": "12D3KooWbad", "AgentVersion": "kubo/0.30.0", "Addresses": []})
        if cmd == "version":
            return web.json_response({"Version": "0.30.0"})
        if cmd == "repo/stat":
            return web.json_response({"RepoSize": 10, "StorageMax": 10**12, "NumObjects": 1})
        if cmd == "pin/ls":
            return web.json_response(
                {"Message": "path is not pinned", "Code": 0, "Type": "error"}, status=500
            )
        return web.json_response({"Message": f"unknown command {cmd}"}, status=404)

    app = web.Application()
    app.router.add_post("/api/v0/{cmd:.+}", ok)
    return app


@pytest.fixture
async def faulty(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Any, aiohttp_server: Any
) -> AsyncIterator[Callable[[dict[str, Route]], Any]]:
    kek = os.urandom(32)
    async with aiohttp.ClientSession() as http:
        factory = ClientFactory(http, kek, NodeClientConfig(request_timeout_s=1.0, pin_timeout_s=1.0))
        registry = NodeRegistry(sessions, kek, allowed_hosts=("127.0.0.1",))
        store = FsBlockstore(tmp_path / "blocks", FsBlockstoreConfig(fsync=False))
        queue = SqlJobQueue(sessions)
        service = ReplicationService(
            sessions,
            store,
            factory,
            queue,
            registry,
            ReplicationConfig(target=Target(1, 1)),
            rng=random.Random(1),
        )
        h = Harness(sessions, store, FakeBackends(), queue, registry, service)

        async def make(overrides: dict[str, Route]) -> Harness:
            server = await aiohttp_server(kubo_like(overrides))
            await registry.add("bad", "kubo", str(server.make_url("/")))
            await service.check_nodes()
            return h

        yield make


async def _garbage(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="<html>surprise</html>", content_type="text/html")


async def _hang(request: web.Request) -> web.Response:
    await request.read()
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def failed_rows(h: Harness) -> list[Replica]:
    async with h.sessions() as s:
        return list((await s.execute(select(Replica).join(IpfsNode).where(IpfsNode.name == "bad"))).scalars())


async def test_node_answering_garbage_to_health_checks_is_down_with_the_reason(faulty: Any) -> None:
    h = await faulty({"id": _garbage})
    async with h.sessions() as s:
        node = (await s.execute(select(IpfsNode))).scalar_one()
    assert node.state is NodeState.DOWN and "node_bad_response" in (node.last_error or "")


async def test_garbage_answer_to_dag_import_fails_the_replica_and_retries_the_job(faulty: Any) -> None:
    h = await faulty({"dag/import": _garbage})
    pack = await h.make_pack(shards=1)
    job = ClaimedJob(
        id=1, kind="replicate", payload={"pack": pack}, attempts=1, max_attempts=3, lease_token="t"
    )
    with pytest.raises(RetryJob, match="node_bad_response"):
        await h.service.replicate(job)
    rows = await failed_rows(h)
    assert {r.state for r in rows} == {ReplicaState.FAILED}
    assert all(r.attempts == 1 and "node_bad_response" in (r.last_error or "") for r in rows)


async def test_node_hanging_on_import_times_out_and_the_replica_says_so(faulty: Any) -> None:
    h = await faulty({"dag/import": _hang})
    pack = await h.make_pack(shards=1)
    outcome = await h.service.replicate_pack(pack)
    assert "node_timeout" in outcome.failed["bad"] and not outcome.summary.satisfied
    assert {r.last_error.split(":")[0] for r in await failed_rows(h) if r.last_error} == {"node_timeout"}


async def _swallow(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"Root": {"Cid": {"/": "bafkqaaa"}, "PinErrorMsg": ""}})


async def test_a_corrupt_file_in_our_own_blockstore_fails_the_replica_not_the_node(faulty: Any) -> None:
    h = await faulty({"dag/import": _swallow})
    h.service.mover.config = type(h.service.mover.config)(prefer_add=False)
    pack = await h.make_pack(shards=1, size=50_000)
    shard = next(u.unit.cid for u in (await h.service.pack_replication(pack)).units if u.unit.kind == "shard")
    path = h.store.file_path(shard)
    path.write_bytes(b"\0" * path.stat().st_size)  # bit rot under the daemon
    outcome = await h.service.replicate_pack(pack)
    assert "corrupt_block" in outcome.failed["bad"] and "this daemon's blockstore" in outcome.failed["bad"]
    async with h.sessions() as s:
        node = (await s.execute(select(IpfsNode))).scalar_one()
    assert node.state is NodeState.UP
    assert all(r.attempts == 0 for r in await failed_rows(h))
