"""Browsing: models by namespace and prefix, versions, pack detail, canonical bytes with ETags, shard bytes."""

from __future__ import annotations

import hashlib
import json

from aiohttp.test_utils import TestClient, TestServer

from model_core.format.pack import pack_cid_of
from registry.app.daemon import build_app
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARD = ("model-00001-of-00001.safetensors", helpers.shard_bytes(600_000, 11))


async def test_models_are_listed_by_namespace_and_prefix_with_cursors(reg: Registry) -> None:
    bob = await helpers.token(reg.client.app, "bob", ["beta"])
    for name in ("tiny-a", "tiny-b", "small", "tiny-c"):
        await helpers.upload_and_publish(
            reg.client, reg.alice, f"acme/{name}", [SHARD], manifest_extra={"model_version": name}
        )
    await helpers.upload_and_publish(
        reg.client, bob, "beta/tiny-z", [SHARD], manifest_extra={"model_version": "z"}
    )
    everything = await (await reg.client.get("/v1/models")).json()
    assert [(m["namespace"], m["name"]) for m in everything["items"]] == [
        ("acme", "small"),
        ("acme", "tiny-a"),
        ("acme", "tiny-b"),
        ("acme", "tiny-c"),
        ("beta", "tiny-z"),
    ]
    names, cursor = [], None
    while True:
        params = {"prefix": "tiny", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await reg.client.get("/v1/models", params=params)).json()
        names += [m["name"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == ["tiny-a", "tiny-b", "tiny-c", "tiny-z"]
    page = await (await reg.client.get("/v1/models", params={"namespace": "beta"})).json()
    assert [m["name"] for m in page["items"]] == ["tiny-z"]
    page = await (await reg.client.get("/v1/models", params={"prefix": "tiny_"})).json()
    assert page["items"] == []  # '_' is literal, not a LIKE wildcard


async def test_versions_are_newest_first_and_paginate(reg: Registry) -> None:
    cids = []
    for v in range(5):
        out = await helpers.upload_and_publish(
            reg.client, reg.alice, "acme/tiny", [SHARD], manifest_extra={"model_version": str(v)}
        )
        cids.append(out["cid"])
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await reg.client.get("/v1/models/acme/tiny/packs", params=params)).json()
        seen += [p["cid"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(cids) and len(seen) == 5
    assert seen[0] == cids[-1]


async def test_manifest_bytes_are_canonical_and_cached_by_etag(reg: Registry) -> None:
    out = await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [SHARD])
    r = await reg.client.get(f"/v1/packs/{out['cid']}/manifest")
    raw = await r.read()
    assert pack_cid_of(raw) == out["cid"] and r.headers["ETag"] == f'"{out["cid"]}"'
    assert "immutable" in r.headers["Cache-Control"]
    r = await reg.client.get(f"/v1/packs/{out['cid']}/manifest", headers={"If-None-Match": f'"{out["cid"]}"'})
    assert r.status == 304
    detail = await (await reg.client.get(f"/v1/packs/{out['cid']}")).json()
    assert detail["manifest"] == json.loads(raw) and detail["state"] == "available"
    assert detail["replicas"] == {} and detail["validation"] is None and detail["signatures"] == []


async def test_shard_bytes_stream_verified_with_etag(reg: Registry) -> None:
    out = await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [SHARD])
    r = await reg.client.get(f"/v1/packs/{out['cid']}/shards/{SHARD[0]}")
    data = await r.read()
    assert data == SHARD[1] and int(r.headers["Content-Length"]) == len(SHARD[1])
    assert r.headers["X-Content-Sha256"] == "sha256:" + hashlib.sha256(SHARD[1]).hexdigest()
    etag = r.headers["ETag"]
    assert (
        await reg.client.get(f"/v1/packs/{out['cid']}/shards/{SHARD[0]}", headers={"If-None-Match": etag})
    ).status == 304
    assert (await reg.client.get(f"/v1/packs/{out['cid']}/shards/nope.safetensors")).status == 404


async def test_unknown_things_are_404_and_bad_cursors_400(reg: Registry) -> None:
    cid = helpers.cid_of(b"nothing")
    for path in (
        f"/v1/packs/{cid}",
        f"/v1/packs/{cid}/manifest",
        "/v1/models/acme/none/packs",
        "/v1/models/acme/none/pointers/latest",
    ):
        r = await reg.client.get(path)
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found", path
    for params in ({"cursor": "!!"}, {"cursor": "WzFd"}, {"limit": "0"}, {"limit": "9999"}, {"limit": "x"}):
        r = await reg.client.get("/v1/models", params=params)
        assert r.status == 400, params
    assert (await reg.client.get("/v1/packs/xyz")).status == 400


async def test_reads_can_require_a_token(settings: Settings) -> None:
    s = settings.model_copy(
        update={"server": settings.server.model_copy(update={"read_requires_token": True})}
    )
    app = build_app(s)
    async with TestClient(TestServer(app)) as client:
        tok = await helpers.token(app, "alice", ["acme"])
        r = await client.get("/v1/models")
        assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
        assert (await client.get("/v1/models", headers=helpers.bearer(tok))).status == 200
        assert (await client.get("/healthz")).status == 200
