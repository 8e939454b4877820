"""``server.read_requires_token`` covers every read route: /ipfs/{cid} (files, blocks, CARs) and /metrics too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app.daemon import build_app
from registry.settings import Settings
from tests.registry.api import helpers


def _server(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update=values),
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
        }
    )


async def _started(settings: Settings) -> AsyncIterator[tuple[TestClient, str, str]]:
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        tok = await helpers.token(app, "alice", ["acme"])
        data = helpers.shard_bytes(3000, seed=7)
        # published: a blob no pack references is its uploader's alone (test_unreferenced_blob_reads)
        await helpers.upload_and_publish(client, tok, "acme/tiny", [("model.safetensors", data)])
        yield client, tok, helpers.cid_of(data)


@pytest.fixture
async def private(settings: Settings) -> AsyncIterator[tuple[TestClient, str, str]]:
    async for started in _started(_server(settings, read_requires_token=True)):
        yield started


GATEWAY_READS = [
    ("", {}),
    ("?format=raw", {}),
    ("?format=car", {}),
    ("", {"Accept": "application/vnd.ipld.raw"}),
    ("", {"Range": "bytes=0-9"}),
]


@pytest.mark.parametrize(("query", "headers"), GATEWAY_READS)
async def test_the_gateway_needs_a_token_when_reads_do(
    private: tuple[TestClient, str, str], query: str, headers: dict[str, str]
) -> None:
    client, tok, cid = private
    for method in ("GET", "HEAD"):
        r = await client.request(method, f"/ipfs/{cid}{query}", headers=headers)
        assert r.status == 401, (method, query, headers, r.status)
        if method == "GET":
            assert (await r.json())["error"]["code"] == "unauthorized"
        assert "X-Ipfs-Roots" not in r.headers
    r = await client.get(f"/ipfs/{cid}{query}", headers={**headers, **helpers.bearer(tok)})
    assert r.status in (200, 206), await r.text()
    bad = await client.get(f"/ipfs/{cid}{query}", headers={**headers, **helpers.bearer("mpk_nope")})
    assert bad.status == 401


async def test_metrics_follow_read_requires_token_by_default(private: tuple[TestClient, str, str]) -> None:
    client, tok, _ = private
    r = await client.get("/metrics")
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    r = await client.get("/metrics", headers=helpers.bearer(tok))
    assert r.status == 200 and "modelpack_jobs" in await r.text()
    assert (await client.get("/healthz")).status == 200


async def test_metrics_have_their_own_setting(settings: Settings) -> None:
    # A private registry whose Prometheus scrapes stay public.
    async for client, _, _ in _started(
        _server(settings, read_requires_token=True, metrics_requires_token=False)
    ):
        assert (await client.get("/metrics")).status == 200
    # A public registry whose metrics are not.
    async for client, tok, cid in _started(_server(settings, metrics_requires_token=True)):
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers=helpers.bearer(tok))).status == 200
        assert (await client.get(f"/ipfs/{cid}")).status == 200


async def test_public_reads_stay_public(settings: Settings) -> None:
    async for client, _, cid in _started(_server(settings)):
        assert (await client.get(f"/ipfs/{cid}")).status == 200
        assert (await client.get(f"/ipfs/{cid}?format=car")).status == 200
        assert (await client.get("/metrics")).status == 200


async def test_a_token_without_a_read_scope_reads_neither(settings: Settings) -> None:
    async for client, _, cid in _started(_server(settings, read_requires_token=True)):
        pin_only = await helpers.token(client.app, "pinner", scopes=("pin",))
        assert (await client.get("/metrics", headers=helpers.bearer(pin_only))).status == 403
        assert (await client.get(f"/ipfs/{cid}", headers=helpers.bearer(pin_only))).status == 403
        reader = await helpers.token(client.app, "reader", scopes=("read",))
        assert (await client.get("/metrics", headers=helpers.bearer(reader))).status == 200
        assert (await client.get(f"/ipfs/{cid}?format=raw", headers=helpers.bearer(reader))).status == 200
