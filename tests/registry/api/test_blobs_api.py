"""Shard upload: streamed, verified against the URL's CID and an optional sha256, cut off over the limit."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from pinner.unixfs import PROFILES
from registry.api.keys import BLOCKSTORE, SESSIONS
from registry.app.daemon import build_app
from registry.db.models import Blob
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

DATA = helpers.shard_bytes(700_000, 7)


def tmp_files(reg: Registry) -> list[Path]:
    return list((reg.client.app[BLOCKSTORE].root / "tmp").iterdir())


async def blob_rows(reg: Registry) -> int:
    async with reg.client.app[SESSIONS]() as s:
        return (await s.execute(select(func.count()).select_from(Blob))).scalar_one()


async def test_upload_then_head_reports_the_verified_file(reg: Registry) -> None:
    cid = helpers.cid_of(DATA)
    assert (await reg.client.get(f"/v1/blobs/{cid}")).status == 404
    sha = hashlib.sha256(DATA).hexdigest()
    r = await helpers.upload(reg.client, reg.alice, DATA, sha256=f"sha256:{sha}")
    assert r.status == 201
    assert await r.json() == {
        "cid": cid,
        "sha256": f"sha256:{sha}",
        "size": len(DATA),
        "unixfs_profile": None,
    }
    r = await helpers.upload(reg.client, reg.alice, DATA)
    assert r.status == 200  # already there: same answer, no second row
    mine = await reg.client.get(f"/v1/blobs/{cid}", headers=helpers.bearer(reg.alice))  # unreferenced: hers
    assert (await mine.json())["size"] == len(DATA)
    assert await blob_rows(reg) == 1
    assert reg.client.app[BLOCKSTORE].stat_file(cid).size == len(DATA)


async def test_profile_upload_is_verified_with_that_profiles_parameters(reg: Registry) -> None:
    params = PROFILES["unixfs-v1-2025"]
    cid = helpers.cid_of(DATA, params)
    r = await helpers.upload(reg.client, reg.alice, DATA, cid=cid, profile="unixfs-v1-2025")
    assert r.status == 201 and (await r.json())["unixfs_profile"] == "unixfs-v1-2025"
    r = await helpers.upload(reg.client, reg.alice, DATA, cid=cid)  # default v1 params give another CID
    assert r.status == 422 and (await r.json())["error"]["code"] == "digest_mismatch"


async def test_bytes_that_do_not_match_the_cid_or_sha256_leave_nothing_behind(reg: Registry) -> None:
    other_cid = helpers.cid_of(b"something else")
    r = await helpers.upload(reg.client, reg.alice, DATA, cid=other_cid)
    err = (await r.json())["error"]
    assert r.status == 422 and err["code"] == "digest_mismatch" and err["details"]["expected"] == other_cid
    r = await helpers.upload(reg.client, reg.alice, DATA, sha256="0" * 64)
    assert r.status == 422 and (await r.json())["error"]["code"] == "digest_mismatch"
    assert await blob_rows(reg) == 0 and tmp_files(reg) == []
    assert not reg.client.app[BLOCKSTORE].has(helpers.cid_of(DATA))


@pytest.mark.parametrize(
    ("path", "query", "code"),
    [
        ("/v1/blobs/not-a-cid", {}, "invalid_cid"),
        (f"/v1/blobs/{helpers.cid_of(DATA)}", {"sha256": "xyz"}, "bad_request"),
        (f"/v1/blobs/{helpers.cid_of(DATA)}", {"profile": "nope"}, "bad_request"),
    ],
)
async def test_malformed_cid_sha256_or_profile_are_400(
    reg: Registry, path: str, query: dict[str, str], code: str
) -> None:
    r = await reg.client.put(path, data=DATA, params=query, headers=helpers.bearer(reg.alice))
    assert r.status == 400 and (await r.json())["error"]["code"] == code


async def test_upload_needs_a_publish_token(reg: Registry) -> None:
    r = await reg.client.put(f"/v1/blobs/{helpers.cid_of(DATA)}", data=DATA)
    assert r.status == 401
    r = await reg.client.put(
        f"/v1/blobs/{helpers.cid_of(DATA)}", data=DATA, headers={"Authorization": "Basic x"}
    )
    assert r.status == 401


@pytest.fixture
async def small_limit(settings: Settings) -> AsyncIterator[Registry]:
    s = settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"max_upload_bytes": 1024 * 1024}),
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
        }
    )
    app = build_app(s)
    async with TestClient(TestServer(app)) as client:
        yield Registry(client, "", await helpers.token(app, "alice", ["acme"]))


async def test_declared_oversize_body_is_refused_before_reading(small_limit: Registry) -> None:
    reg = small_limit
    r = await helpers.upload(reg.client, reg.alice, b"x" * (2 * 1024 * 1024))
    assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"


async def test_streamed_oversize_body_is_cut_off_early(small_limit: Registry) -> None:
    reg = small_limit
    sent = 0
    total = 512 * 1024 * 1024

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b"\0" * (1024 * 1024)
        while sent < total:
            sent += len(chunk)
            yield chunk

    status = None
    try:
        r = await reg.client.put(
            f"/v1/blobs/{helpers.cid_of(b'x')}", data=body(), headers=helpers.bearer(reg.alice)
        )
        status = r.status
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
        pass  # the server may close the connection while the client is still sending
    assert status in (None, 413)
    assert sent < total // 4  # the server stopped reading long before the end
    assert await blob_rows(reg) == 0 and tmp_files(reg) == []
