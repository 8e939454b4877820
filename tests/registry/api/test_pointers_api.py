"""Pointers: resolve, compare-and-swap with If-Match (412 on a lost race), reserved tags, odd names, history."""

from __future__ import annotations

import asyncio

import pytest

from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARD = ("model-00001-of-00001.safetensors", helpers.shard_bytes(5000, 5))


async def two_versions(reg: Registry) -> tuple[str, str]:
    a = await helpers.upload_and_publish(
        reg.client, reg.alice, "acme/tiny", [SHARD], manifest_extra={"model_version": "1"}
    )
    b = await helpers.upload_and_publish(
        reg.client, reg.alice, "acme/tiny", [SHARD], manifest_extra={"model_version": "2"}
    )
    return a["cid"], b["cid"]


async def put(reg: Registry, tag: str, cid: str, tok: str | None = None, **headers: str) -> object:
    return await reg.client.put(
        f"/v1/models/acme/tiny/pointers/{tag}",
        json={"cid": cid, "reason": "promote"},
        headers={**helpers.bearer(tok or reg.alice), **headers},
    )


async def test_set_with_if_match_moves_and_a_stale_if_match_is_412(reg: Registry) -> None:
    v1, v2 = await two_versions(reg)
    r = await put(reg, "stable", v1, **{"If-None-Match": "*"})
    assert r.status == 200 and r.headers["ETag"] == f'"{v1}"'  # type: ignore[attr-defined]
    r = await put(reg, "stable", v2, **{"If-None-Match": "*"})
    assert r.status == 412  # type: ignore[attr-defined]
    r = await put(reg, "stable", v2, **{"If-Match": f'"{v1}"'})
    assert r.status == 200  # type: ignore[attr-defined]
    r = await put(reg, "stable", v1, **{"If-Match": f'"{v1}"'})  # stale: someone already moved it
    body = await r.json()  # type: ignore[attr-defined]
    assert r.status == 412 and body["error"]["code"] == "precondition_failed"  # type: ignore[attr-defined]
    assert body["error"]["details"]["current"] == v2
    resolved = await (await reg.client.get("/v1/models/acme/tiny/pointers/stable")).json()
    assert resolved["cid"] == v2 and resolved["updated_by"] == "alice"
    hist = (await (await reg.client.get("/v1/models/acme/tiny/pointers/stable/history")).json())["items"]
    assert [(h["from_cid"], h["to_cid"], h["reason"]) for h in hist] == [
        (v1, v2, "promote"),
        (None, v1, "promote"),
    ]
    tags = [p["tag"] for p in (await (await reg.client.get("/v1/models/acme/tiny/pointers")).json())["items"]]
    assert tags == ["latest", "stable"]
    every = (await (await reg.client.get("/v1/models/acme/tiny/history")).json())["items"]
    assert {h["tag"] for h in every} == {"latest", "stable"} and len(every) == 4


async def test_concurrent_cas_has_exactly_one_winner(reg: Registry) -> None:
    v1, v2 = await two_versions(reg)
    await put(reg, "stable", v1)
    rs = await asyncio.gather(*(put(reg, "stable", v2, **{"If-Match": v1}) for _ in range(5)))
    statuses = sorted(r.status for r in rs)  # type: ignore[attr-defined]
    assert statuses.count(200) == 1 and statuses.count(412) == 4
    hist = (await (await reg.client.get("/v1/models/acme/tiny/pointers/stable/history")).json())["items"]
    assert len(hist) == 2


async def test_curated_is_reserved(reg: Registry) -> None:
    v1, _ = await two_versions(reg)
    r = await put(reg, "curated", v1, reg.admin)
    assert r.status == 403 and (await r.json())["error"]["code"] == "pointer_reserved"  # type: ignore[attr-defined]


@pytest.mark.parametrize("tag", ["a%20b", "%C3%BC", "a..b", "x!", "-x"])
async def test_odd_pointer_names_are_refused(reg: Registry, tag: str) -> None:
    v1, _ = await two_versions(reg)
    r = await reg.client.put(
        f"/v1/models/acme/tiny/pointers/{tag}", json={"cid": v1}, headers=helpers.bearer(reg.alice)
    )
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_name"
    assert (await reg.client.get(f"/v1/models/acme/tiny/pointers/{tag}")).status == 400


async def test_only_namespace_members_move_pointers_and_only_to_their_models_packs(reg: Registry) -> None:
    v1, _ = await two_versions(reg)
    bob = await helpers.token(reg.client.app, "bob", ["beta"])
    r = await put(reg, "stable", v1, bob)
    assert r.status == 403  # type: ignore[attr-defined]
    other = await helpers.upload_and_publish(
        reg.client, bob, "beta/x", [SHARD], manifest_extra={"model_version": "b"}
    )
    r = await put(reg, "stable", other["cid"])
    assert r.status == 409  # type: ignore[attr-defined]
    r = await put(reg, "stable", helpers.cid_of(b"no such pack"))
    assert r.status == 404  # type: ignore[attr-defined]
    r = await reg.client.put(
        "/v1/models/acme/tiny/pointers/stable", data=b"{", headers=helpers.bearer(reg.alice)
    )
    assert r.status == 400
