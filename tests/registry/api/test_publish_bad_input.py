"""Bad publish bodies over HTTP: each a 4xx with a stable code, and no row written."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from registry.api.keys import SESSIONS
from registry.db.models import Model, Pack, PointerChange, Shard
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARDS = [("model-00001-of-00001.safetensors", helpers.shard_bytes(2000, 3))]


async def nothing_stored(reg: Registry) -> bool:
    async with reg.client.app[SESSIONS]() as s:
        n = [
            (await s.execute(select(func.count()).select_from(t))).scalar_one()
            for t in (Pack, Shard, Model, PointerChange)
        ]
    return n == [0, 0, 0, 0]


def with_shards(**changes: object) -> dict[str, object]:
    m = helpers.manifest(SHARDS)
    m["shards"][0].update(changes)
    return {"manifest": m}


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 422, "invalid_manifest"),
        (b'{"manifest": "\xff"}', 422, "invalid_manifest"),
        (b"[]", 400, "bad_request"),
        (
            json.dumps({"manifest": {**helpers.manifest(SHARDS), "format": "gguf"}}).encode(),
            422,
            "invalid_manifest",
        ),
        (
            json.dumps(
                {
                    "manifest": {
                        **helpers.manifest(SHARDS),
                        "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
                    }
                }
            ).encode(),
            422,
            "invalid_manifest",
        ),
        (json.dumps(with_shards(filename="../../etc/passwd")).encode(), 422, "invalid_manifest"),
        (json.dumps(with_shards(filename="a/b")).encode(), 422, "invalid_manifest"),
        (json.dumps(with_shards(filename="manifest.json")).encode(), 422, "invalid_manifest"),
        (json.dumps(with_shards(filename="")).encode(), 422, "invalid_manifest"),
        (json.dumps(with_shards(filename="a\u0000b")).encode(), 422, "invalid_manifest"),
        (json.dumps(with_shards(cid="Qmnotacid")).encode(), 422, "invalid_manifest"),
        (json.dumps(with_shards(sha256="sha256:1234")).encode(), 422, "invalid_manifest"),
        (json.dumps({"manifest": helpers.manifest(SHARDS), "extra": 1}).encode(), 400, "bad_request"),
        (json.dumps({"manifest": helpers.manifest(SHARDS), "tag": "no way"}).encode(), 400, "invalid_name"),
        (json.dumps({"manifest": helpers.manifest(SHARDS), "signatures": {}}).encode(), 400, "bad_request"),
        (json.dumps({"signatures": []}).encode(), 422, "invalid_manifest"),
    ],
)
async def test_bad_bodies_are_refused(reg: Registry, raw: bytes, status: int, code: str) -> None:
    await helpers.upload(reg.client, reg.alice, SHARDS[0][1])
    r = await reg.client.post(
        "/v1/models/acme/tiny/packs",
        data=raw,
        headers={**helpers.bearer(reg.alice), "Content-Type": "application/json"},
    )
    body = await r.json()
    assert (r.status, body["error"]["code"]) == (status, code), body
    assert await nothing_stored(reg)


async def test_duplicate_filenames_and_too_many_shards(reg: Registry) -> None:
    await helpers.upload(reg.client, reg.alice, SHARDS[0][1])
    m = helpers.manifest(SHARDS)
    m["shards"].append(dict(m["shards"][0]))
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": m})
    assert r.status == 422 and "listed twice" in (await r.json())["error"]["message"]
    m["shards"] = [dict(m["shards"][0], filename=f"s{i}") for i in range(100_000)]
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": m})
    assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"
    assert await nothing_stored(reg)


async def test_oversize_manifest_is_refused(reg: Registry) -> None:
    m = helpers.manifest(SHARDS)
    m["padding"] = ["x" * 4000] * 263  # over 1 MiB canonical, under the body limit
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": m})
    assert r.status == 413 and (await r.json())["error"]["code"] == "manifest_too_large"
    assert await nothing_stored(reg)


@pytest.mark.parametrize("name", ["acme/ti--ny", "acme/ti%20ny", "acme/..", "acme/a..b", "acme/tiny-"])
async def test_odd_model_names_are_refused(reg: Registry, name: str) -> None:
    r = await helpers.publish(reg.client, reg.alice, name, {"manifest": helpers.manifest(SHARDS)})
    assert r.status in (400, 404)
    if r.status == 400:
        assert (await r.json())["error"]["code"] == "invalid_name"
    assert await nothing_stored(reg)
