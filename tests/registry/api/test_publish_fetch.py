"""Publish by CID: shards not uploaded are fetched from IPFS nodes by the ``fetch`` job, verified, then available.

The nodes here are in-test fake Kubo servers (right bytes, wrong bytes); the js-ipfs happy path is in
``test_publish_fetch_ipfs.py``. The job worker is off: each test claims the ``fetch`` job and runs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from pinner.states import NodeKind, NodeState
from registry.api.keys import BLOCKSTORE, JOB_QUEUE, SESSIONS, SHARD_FETCH
from registry.db.jobs import Job
from registry.db.models import Blob, IpfsNode, PackState, Shard
from registry.jobs.protocol import ClaimedJob, RetryJob
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

UPLOADED = ("model-00001-of-00002.safetensors", helpers.shard_bytes(300_000, 1))
ON_IPFS = ("model-00002-of-00002.safetensors", helpers.shard_bytes(70_000, 2))
SHARDS = [UPLOADED, ON_IPFS]

FakeNode = Callable[[dict[str, bytes]], Awaitable[str]]


@pytest.fixture
async def fake_node(reg: Registry) -> AsyncIterator[FakeNode]:
    """Starts a Kubo stand-in whose ``cat`` serves ``content[cid]`` and registers it as an up node."""
    servers: list[TestServer] = []

    async def make(content: dict[str, bytes]) -> str:
        async def cat(request: web.Request) -> web.StreamResponse:
            data = content.get(request.query["arg"])
            if data is None:
                return web.json_response({"Message": "block was not found locally", "Code": 0}, status=500)
            return web.Response(body=data, content_type="text/plain")

        app = web.Application()
        app.router.add_post("/api/v0/cat", cat)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        url = f"http://127.0.0.1:{server.port}"
        async with reg.client.app[SESSIONS]() as s, s.begin():
            s.add(IpfsNode(name=f"fake{len(servers)}", kind=NodeKind.KUBO, url=url, state=NodeState.UP))
        return url

    yield make
    for server in servers:
        await server.close()


async def claim_fetch(reg: Registry) -> ClaimedJob:
    job = await reg.client.app[JOB_QUEUE].claim(["fetch"], "test")
    assert job is not None
    return job


async def job_kinds(reg: Registry) -> list[str]:
    async with reg.client.app[SESSIONS]() as s:
        return sorted(j.kind for j in (await s.execute(select(Job))).scalars())


async def publish_received(reg: Registry, manifest: dict[str, Any] | None = None) -> str:
    r = await helpers.upload(reg.client, reg.alice, UPLOADED[1])
    assert r.status in (200, 201), await r.text()
    r = await helpers.publish(
        reg.client, reg.alice, "acme/tiny", {"manifest": manifest or helpers.manifest(SHARDS)}
    )
    assert r.status == 201, await r.text()
    out = await r.json()
    assert out["state"] == "received" and out["pointers"] == {}
    cid: str = out["cid"]
    return cid


async def test_no_node_configured_keeps_missing_shards(reg: Registry) -> None:
    before = await helpers.counts(reg.client)
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": helpers.manifest(SHARDS)})
    assert r.status == 409
    err = (await r.json())["error"]
    assert err["code"] == "missing_shards" and "add a node" in err["message"]
    assert await helpers.counts(reg.client) == before


async def test_shards_on_a_node_are_fetched_verified_and_the_pack_becomes_available(
    reg: Registry, fake_node: FakeNode
) -> None:
    await fake_node({helpers.cid_of(ON_IPFS[1]): ON_IPFS[1]})
    # An uploaded shard may omit its size (the registry learns it from the bytes); a fetched one may not.
    shards = [helpers.shard_entry(*UPLOADED, size=False), helpers.shard_entry(*ON_IPFS)]
    cid = await publish_received(reg, {**helpers.manifest(SHARDS), "shards": shards})
    assert await job_kinds(reg) == ["fetch"]
    assert (await reg.client.get("/v1/models/acme/tiny/pointers/latest")).status == 404

    await reg.client.app[SHARD_FETCH].handle_fetch(await claim_fetch(reg))

    detail = await (await reg.client.get(f"/v1/packs/{cid}")).json()
    assert detail["state"] == "available"
    assert [h["to"] for h in detail["history"]] == ["received", "available"]
    assert [s["size"] for s in detail["shards"]] == [len(d) for _, d in SHARDS]
    assert detail["total_size"] == sum(len(d) for _, d in SHARDS)
    latest = await (await reg.client.get("/v1/models/acme/tiny/pointers/latest")).json()
    assert latest["cid"] == cid
    store = reg.client.app[BLOCKSTORE]
    assert (
        store.stat_file(helpers.cid_of(ON_IPFS[1])).sha256_hex == helpers.shard_entry(*ON_IPFS)["sha256"][7:]
    )
    assert await job_kinds(reg) == ["fetch", "replicate", "validate"]
    r = await reg.client.get(f"/v1/packs/{cid}/shards/{ON_IPFS[0]}")
    assert r.status == 200 and await r.read() == ON_IPFS[1]


async def test_wrong_bytes_from_every_node_are_retried_then_the_pack_is_rejected(
    reg: Registry, fake_node: FakeNode
) -> None:
    want = helpers.cid_of(ON_IPFS[1])
    await fake_node({want: helpers.shard_bytes(70_000, 99)})
    cid = await publish_received(reg)
    job = await claim_fetch(reg)
    assert job.attempts < job.max_attempts
    with pytest.raises(RetryJob, match=ON_IPFS[0]):
        await reg.client.app[SHARD_FETCH].handle_fetch(job)
    detail = await (await reg.client.get(f"/v1/packs/{cid}")).json()
    assert detail["state"] == "received"

    last = dataclasses.replace(job, attempts=job.max_attempts)
    await reg.client.app[SHARD_FETCH].handle_fetch(last)

    detail = await (await reg.client.get(f"/v1/packs/{cid}")).json()
    assert detail["state"] == PackState.REJECTED.value
    assert ON_IPFS[0] in detail["state_reason"] and want in detail["state_reason"]
    assert "fake1" in detail["state_reason"] and "expected" in detail["state_reason"]
    async with reg.client.app[SESSIONS]() as s:
        assert await s.get(Blob, want) is None
    assert (await reg.client.get("/v1/models/acme/tiny/pointers/latest")).status == 404
    assert await job_kinds(reg) == ["fetch"]


async def test_publishing_again_while_received_is_idempotent(reg: Registry, fake_node: FakeNode) -> None:
    await fake_node({})
    cid = await publish_received(reg)
    before = await helpers.counts(reg.client)
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": helpers.manifest(SHARDS)})
    assert r.status == 200
    again = await r.json()
    assert again == {**again, "cid": cid, "created": False, "state": "received"}
    assert await helpers.counts(reg.client) == before


async def test_a_version_published_meanwhile_keeps_latest(reg: Registry, fake_node: FakeNode) -> None:
    await fake_node({helpers.cid_of(ON_IPFS[1]): ON_IPFS[1]})
    old = await publish_received(reg)
    new = await helpers.upload_and_publish(
        reg.client, reg.alice, "acme/tiny", [UPLOADED], manifest_extra={"model_version": "2"}
    )
    await reg.client.app[SHARD_FETCH].handle_fetch(await claim_fetch(reg))
    detail = await (await reg.client.get(f"/v1/packs/{old}")).json()
    assert detail["state"] == "available"
    latest = await (await reg.client.get("/v1/models/acme/tiny/pointers/latest")).json()
    assert latest["cid"] == new["cid"]


async def test_a_sha256_the_cids_bytes_do_not_have_is_rejected_without_retrying(
    reg: Registry, fake_node: FakeNode
) -> None:
    await fake_node({helpers.cid_of(ON_IPFS[1]): ON_IPFS[1]})
    manifest = helpers.manifest(SHARDS)
    manifest["shards"][1]["sha256"] = "sha256:" + "0" * 64
    cid = await publish_received(reg, manifest)
    job = await claim_fetch(reg)
    assert job.attempts < job.max_attempts
    await reg.client.app[SHARD_FETCH].handle_fetch(job)  # no RetryJob: no node could ever satisfy both
    detail = await (await reg.client.get(f"/v1/packs/{cid}")).json()
    assert detail["state"] == "rejected"
    assert (
        ON_IPFS[0] in detail["state_reason"]
        and "manifest declares sha256:" + "0" * 64 in detail["state_reason"]
    )


async def test_publish_by_cid_needs_each_missing_shards_size(reg: Registry, fake_node: FakeNode) -> None:
    await fake_node({helpers.cid_of(ON_IPFS[1]): ON_IPFS[1]})
    assert (await helpers.upload(reg.client, reg.alice, UPLOADED[1])).status == 201
    before = await helpers.counts(reg.client)
    sizeless = [helpers.shard_entry(*UPLOADED), helpers.shard_entry(*ON_IPFS, size=False)]
    body = {"manifest": {**helpers.manifest(SHARDS), "shards": sizeless}}
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", body)
    err = (await r.json())["error"]
    assert r.status == 422 and err["code"] == "invalid_manifest"
    assert ON_IPFS[0] in err["message"] and "size" in err["message"]
    assert await helpers.counts(reg.client) == before


async def test_a_fetch_reads_no_more_than_the_packs_remaining_budget(
    reg: Registry, fake_node: FakeNode
) -> None:
    """A shard whose size is unknown (a pack received before sizes were required) is capped at what the pack's
    budget leaves after its other shards, not at the whole pack limit."""
    await fake_node({helpers.cid_of(ON_IPFS[1]): ON_IPFS[1]})
    cid = await publish_received(reg)
    async with reg.client.app[SESSIONS]() as s, s.begin():
        await s.execute(
            update(Shard).where(Shard.pack_cid == cid, Shard.filename == ON_IPFS[0]).values(size=0)
        )
    fetch = reg.client.app[SHARD_FETCH]
    budget = 50_000
    fetch.config = dataclasses.replace(fetch.config, pack_max_bytes=len(UPLOADED[1]) + budget)
    job = await claim_fetch(reg)
    with pytest.raises(RetryJob, match=f"more than {budget} bytes"):
        await fetch.handle_fetch(job)
    assert not reg.client.app[BLOCKSTORE].has(helpers.cid_of(ON_IPFS[1]))
    # A shard whose declared size no longer fits the budget is refused without reading a byte.
    async with reg.client.app[SESSIONS]() as s, s.begin():
        await s.execute(
            update(Shard)
            .where(Shard.pack_cid == cid, Shard.filename == ON_IPFS[0])
            .values(size=len(ON_IPFS[1]))
        )
    await fetch.handle_fetch(job)
    detail = await (await reg.client.get(f"/v1/packs/{cid}")).json()
    assert detail["state"] == "rejected" and "limit" in detail["state_reason"]
