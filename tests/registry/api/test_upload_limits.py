"""Uploads are bounded (issue 12, item 5): namespace membership, a per-publisher quota of unreferenced bytes,
per-publisher and daemon-wide caps on uploads in flight, a body read deadline, and unreferenced blobs
collected after a grace period without racing a publish that starts using them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from registry.api.keys import BLOCKSTORE, REGISTRY, SESSIONS
from registry.app import jobs
from registry.app.daemon import build_app
from registry.db.models import Blob
from registry.jobs.kinds import JobKind
from registry.packs.blobs import BlobService
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

A = helpers.shard_bytes(700_000, 11)
B = helpers.shard_bytes(700_000, 12)
SHARD = "model-00001-of-00001.safetensors"


def tuned(settings: Settings, **server: Any) -> Settings:
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update=server),
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
        }
    )


@pytest.fixture
async def make_reg(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient] = []

    async def make(**server: Any) -> Registry:
        app = build_app(tuned(settings, **server))
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        admin = await helpers.token(app, "root", scopes=("admin",))
        return Registry(client, admin, await helpers.token(app, "alice", ["acme"]))

    yield make
    for c in clients:
        await c.close()


async def blob_cids(reg: Registry) -> set[str]:
    async with reg.client.app[SESSIONS]() as s:
        return set((await s.execute(select(Blob.cid))).scalars())


def tmp_files(reg: Registry) -> list[Path]:
    return list((reg.client.app[BLOCKSTORE].root / "tmp").iterdir())


def blobs(reg: Registry) -> BlobService:
    return reg.client.app[REGISTRY].blobs


async def until(cond: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    end = asyncio.get_running_loop().time() + deadline_s
    while not cond():
        assert asyncio.get_running_loop().time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def stalled(data: bytes, release: asyncio.Event) -> AsyncIterator[bytes]:
    """Half the body, then nothing until ``release`` is set, then the rest."""
    yield data[: len(data) // 2]
    await release.wait()
    yield data[len(data) // 2 :]


async def test_a_publisher_in_no_namespace_may_not_upload(reg: Registry) -> None:
    app = reg.client.app
    mallory = await helpers.token(app, "mallory")  # a token, but no namespace membership
    r = await helpers.upload(reg.client, mallory, A)
    err = (await r.json())["error"]
    assert r.status == 403 and err["code"] == "upload_needs_namespace" and "mallory" in err["message"]
    assert await blob_cids(reg) == set() and tmp_files(reg) == []
    assert (await helpers.upload(reg.client, reg.alice, A)).status == 201  # a member of acme may
    assert (await helpers.upload(reg.client, reg.admin, B)).status == 201  # a global admin may


async def test_quota_counts_unreferenced_bytes_per_publisher(make_reg: Callable[..., Any]) -> None:
    reg: Registry = await make_reg(upload_quota_bytes=1_000_000)
    assert (await helpers.upload(reg.client, reg.alice, A)).status == 201
    r = await helpers.upload(reg.client, reg.alice, B)  # declared length: refused before reading
    err = (await r.json())["error"]
    assert r.status == 413 and err["code"] == "upload_quota_exceeded"
    assert err["details"]["quota"] == 1_000_000 and err["details"]["used"] == len(A)

    async def chunked() -> AsyncIterator[bytes]:  # no length: cut off while it streams
        for i in range(0, len(B), 65536):
            yield B[i : i + 65536]

    try:
        r = await reg.client.put(
            f"/v1/blobs/{helpers.cid_of(B)}", data=chunked(), headers=helpers.bearer(reg.alice)
        )
        assert r.status == 413 and (await r.json())["error"]["code"] == "upload_quota_exceeded"
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
        pass  # the server may close the connection while the client is still sending
    assert await blob_cids(reg) == {helpers.cid_of(A)} and tmp_files(reg) == []
    assert (await helpers.upload(reg.client, reg.alice, A)).status == 200  # stored bytes add nothing

    # Once a pack uses A, its bytes no longer count against the quota.
    await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [(SHARD, A)])
    assert (await helpers.upload(reg.client, reg.alice, B)).status == 201


@pytest.mark.parametrize(
    ("caps", "status", "code"),
    [
        ({"max_uploads_per_publisher": 1, "max_uploads_in_flight": 10}, 429, "too_many_uploads"),
        ({"max_uploads_per_publisher": 10, "max_uploads_in_flight": 1}, 503, "uploads_busy"),
    ],
)
async def test_uploads_in_flight_are_capped_with_retry_after(
    make_reg: Callable[..., Any], caps: dict[str, int], status: int, code: str
) -> None:
    reg: Registry = await make_reg(upload_retry_after_s=7, **caps)
    release = asyncio.Event()
    first = asyncio.create_task(
        reg.client.put(
            f"/v1/blobs/{helpers.cid_of(A)}", data=stalled(A, release), headers=helpers.bearer(reg.alice)
        )
    )
    try:
        await until(lambda: blobs(reg).in_flight == 1, "the first upload to be in flight")
        r = await helpers.upload(reg.client, reg.alice, B)
        assert r.status == status and (await r.json())["error"]["code"] == code
        assert r.headers["Retry-After"] == "7"
    finally:
        release.set()
    assert (await first).status == 201
    assert blobs(reg).in_flight == 0
    assert (await helpers.upload(reg.client, reg.alice, B)).status == 201  # the slot is free again


@pytest.mark.parametrize(
    ("timeouts", "said"),
    [
        ({"upload_idle_timeout_s": 0.3}, "sent nothing for 0.3s"),
        ({"upload_timeout_s": 0.3}, "longer than 0.3s in all"),
    ],
)
async def test_a_stalled_body_is_cut_off_and_nothing_is_stored(
    make_reg: Callable[..., Any], timeouts: dict[str, float], said: str
) -> None:
    reg: Registry = await make_reg(**timeouts)
    release = asyncio.Event()
    status = None
    try:
        async with asyncio.timeout(60):  # without a read deadline the server would wait for ever
            r = await reg.client.put(
                f"/v1/blobs/{helpers.cid_of(A)}", data=stalled(A, release), headers=helpers.bearer(reg.alice)
            )
        status = r.status
        err = (await r.json())["error"]
        assert err["code"] == "upload_timeout" and said in err["message"]
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
        pass  # the server may close the connection under the stalled client
    finally:
        release.set()
    assert status in (None, 408)
    await until(lambda: blobs(reg).in_flight == 0, "the upload to end")
    assert await blob_cids(reg) == set() and tmp_files(reg) == []


async def test_unreferenced_blobs_are_collected_after_the_grace(make_reg: Callable[..., Any]) -> None:
    reg: Registry = await make_reg(unreferenced_blob_grace_s=3600.0)
    assert (await helpers.upload(reg.client, reg.alice, A)).status == 201
    assert (await blobs(reg).collect_unreferenced())["deleted"] == 0  # within the grace
    assert await blob_cids(reg) == {helpers.cid_of(A)}

    blobs(reg).config = dataclasses.replace(blobs(reg).config, unreferenced_grace_s=0.0)
    await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [(SHARD, B)])
    out = await blobs(reg).collect_unreferenced()
    assert out["deleted"] == 1 and out["bytes"] == len(A)
    store = reg.client.app[BLOCKSTORE]
    assert await blob_cids(reg) == {helpers.cid_of(B)}
    assert not store.has(helpers.cid_of(A)) and store.has(helpers.cid_of(B))
    assert (await reg.client.get(f"/v1/blobs/{helpers.cid_of(A)}")).status == 404
    assert (await helpers.upload(reg.client, reg.alice, A)).status == 201  # and may come back


async def test_collection_rechecks_references_when_it_deletes(
    make_reg: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack published between the candidate query and the deletion keeps its bytes."""
    reg: Registry = await make_reg(unreferenced_blob_grace_s=0.0)
    assert (await helpers.upload(reg.client, reg.alice, A)).status == 201
    svc = blobs(reg)
    original = svc._delete_if_unreferenced

    async def publish_first(cid: str, cutoff: Any) -> int | None:
        r = await helpers.publish(
            reg.client, reg.alice, "acme/tiny", {"manifest": helpers.manifest([(SHARD, A)])}
        )
        assert r.status == 201, await r.text()
        return await original(cid, cutoff)

    monkeypatch.setattr(svc, "_delete_if_unreferenced", publish_first)
    out = await svc.collect_unreferenced()
    assert out["candidates"] == 1 and out["deleted"] == 0
    assert await blob_cids(reg) == {helpers.cid_of(A)}
    assert reg.client.app[BLOCKSTORE].has(helpers.cid_of(A))


def test_blob_gc_is_a_scheduled_job_kind() -> None:
    s = Settings(server={"blob_gc_interval_s": 13.0})
    assert {x.kind: x.interval_s for x in jobs.schedules(s)}[JobKind.BLOB_GC] == 13.0


def test_upload_settings_reach_the_blob_service() -> None:
    from registry.app import configs
    from registry.packs.blobs import BlobConfig

    assert configs.blob_config(Settings()) == BlobConfig()  # the component's defaults are the settings'
    s = Settings(
        server={
            "upload_quota_bytes": 9,
            "max_uploads_per_publisher": 2,
            "max_uploads_in_flight": 3,
            "upload_idle_timeout_s": 4.0,
            "upload_timeout_s": 5.0,
            "upload_retry_after_s": 6,
            "unreferenced_blob_grace_s": 7.0,
        }
    )
    assert configs.blob_config(s) == BlobConfig(
        max_upload_bytes=s.server.max_upload_bytes,
        upload_quota_bytes=9,
        max_uploads_per_publisher=2,
        max_uploads_in_flight=3,
        idle_timeout_s=4.0,
        total_timeout_s=5.0,
        retry_after_s=6,
        unreferenced_grace_s=7.0,
    )
