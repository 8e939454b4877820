"""The Pinning Service API per its spec, on SQLite and Postgres: objects, filters, tenancy, quotas, errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.registry.pinning.conftest import Psa, raw_cid


async def add(psa: Psa, tok: str, cid: str, **pin: Any) -> dict[str, Any]:
    r = await psa.client.post("/psa/pins", json={"cid": cid, **pin}, headers=psa.h(tok))
    assert r.status == 202, await r.text()
    return dict(await r.json())


async def listing(psa: Psa, tok: str, **query: str) -> dict[str, Any]:
    r = await psa.client.get("/psa/pins", params=query, headers=psa.h(tok))
    assert r.status == 200, await r.text()
    return dict(await r.json())


async def test_add_returns_a_spec_pin_status_and_get_finds_it(psa: Psa) -> None:
    cid = raw_cid(b"one")
    origin = "/ip4/127.0.0.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    body = await add(psa, psa.alice, cid, name="weights.bin", origins=[origin], meta={"app": "x"})
    assert body["status"] == "queued"
    assert body["pin"] == {"cid": cid, "name": "weights.bin", "origins": [origin], "meta": {"app": "x"}}
    assert body["created"].endswith("Z") and 1 <= len(body["delegates"]) <= 20
    assert "status_details" in body["info"]
    r = await psa.client.get(f"/psa/pins/{body['requestid']}", headers=psa.h(psa.alice))
    assert r.status == 200 and (await r.json())["requestid"] == body["requestid"]


async def test_default_listing_shows_pinned_only_and_filters_select(psa: Psa) -> None:
    a = await add(psa, psa.alice, raw_cid(b"a"), name="Alpha-Model", meta={"team": "nlp", "k": "1"})
    b = await add(psa, psa.alice, raw_cid(b"b"), name="beta", meta={"team": "nlp"})
    assert await listing(psa, psa.alice) == {"count": 0, "results": []}  # neither is pinned yet
    both = await listing(psa, psa.alice, status="queued,pinning")
    assert both["count"] == 2 and [p["requestid"] for p in both["results"]] == [
        b["requestid"],
        a["requestid"],
    ]
    r = await psa.client.get("/psa/pins?status=queued&status=failed", headers=psa.h(psa.alice))
    assert (await r.json())["count"] == 2  # repeated and comma-joined alike
    assert (await listing(psa, psa.alice, cid=f"{raw_cid(b'a')},{raw_cid(b'zz')}"))["count"] == 1
    assert (await listing(psa, psa.alice, name="alpha-model", match="iexact"))["count"] == 1
    assert (await listing(psa, psa.alice, name="alpha-model"))["count"] == 0  # exact is case-sensitive
    assert (await listing(psa, psa.alice, name="pha", match="partial"))["count"] == 1
    assert (await listing(psa, psa.alice, name="PHA", match="partial"))["count"] == 0
    assert (await listing(psa, psa.alice, name="PHA", match="ipartial"))["count"] == 1
    assert (await listing(psa, psa.alice, meta='{"team": "nlp", "k": "1"}'))["count"] == 1  # AND
    assert (await listing(psa, psa.alice, meta='{"team": "nlp"}'))["count"] == 2
    assert (await listing(psa, psa.alice, before=b["created"], status="queued"))["count"] == 1
    assert (await listing(psa, psa.alice, after=a["created"], status="queued"))["results"][0][
        "requestid"
    ] == (b["requestid"])
    page = await listing(psa, psa.alice, status="queued", limit="1")
    assert page["count"] == 2 and len(page["results"]) == 1


async def test_another_publishers_pin_is_not_found_and_never_listed(psa: Psa) -> None:
    mine = await add(psa, psa.alice, raw_cid(b"private"))
    for method in ("get", "delete"):
        r = await getattr(psa.client, method)(f"/psa/pins/{mine['requestid']}", headers=psa.h(psa.bob))
        assert r.status == 404 and (await r.json())["error"]["reason"] == "NOT_FOUND"
    r = await psa.client.post(
        f"/psa/pins/{mine['requestid']}", json={"cid": raw_cid(b"x")}, headers=psa.h(psa.bob)
    )
    assert r.status == 404
    assert (await listing(psa, psa.bob, status="queued"))["count"] == 0
    assert (await listing(psa, psa.alice, status="queued"))["count"] == 1  # untouched


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
async def test_missing_or_bad_token_is_401(psa: Psa, header: str | None) -> None:
    r = await psa.client.get("/psa/pins", headers={"Authorization": header} if header else {})
    assert r.status == 401
    body = await r.json()
    assert body["error"]["reason"] == "UNAUTHORIZED" and body["error"]["details"]


async def test_a_token_without_the_pin_scope_is_refused(psa: Psa) -> None:
    r = await psa.client.post("/psa/pins", json={"cid": raw_cid(b"x")}, headers=psa.h(psa.publisher_only))
    assert r.status == 401 and "pin scope" in (await r.json())["error"]["details"]


async def test_pin_count_quota_is_409_and_nothing_is_written(psa: Psa) -> None:
    for i in range(5):  # the fixture's max_pins
        await add(psa, psa.alice, raw_cid(b"q%d" % i))
    r = await psa.client.post("/psa/pins", json={"cid": raw_cid(b"over")}, headers=psa.h(psa.alice))
    assert r.status == 409 and (await r.json())["error"]["reason"] == "INSUFFICIENT_FUNDS"
    assert (await listing(psa, psa.alice, status="queued"))["count"] == 5
    await add(psa, psa.bob, raw_cid(b"bob"))  # quotas are per publisher


async def test_delete_hides_the_pin(psa: Psa) -> None:
    p = await add(psa, psa.alice, raw_cid(b"gone"))
    r = await psa.client.delete(f"/psa/pins/{p['requestid']}", headers=psa.h(psa.alice))
    assert r.status == 202
    r = await psa.client.get(f"/psa/pins/{p['requestid']}", headers=psa.h(psa.alice))
    assert r.status == 404


async def test_replace_answers_a_new_pin_and_hides_the_old(psa: Psa) -> None:
    old = await add(psa, psa.alice, raw_cid(b"v1"), name="m")
    r = await psa.client.post(
        f"/psa/pins/{old['requestid']}", json={"cid": raw_cid(b"v2"), "name": "m"}, headers=psa.h(psa.alice)
    )
    assert r.status == 202
    new = await r.json()
    assert new["requestid"] != old["requestid"] and new["pin"]["cid"] == raw_cid(b"v2")
    r = await psa.client.get(f"/psa/pins/{old['requestid']}", headers=psa.h(psa.alice))
    assert r.status == 404
    assert [
        p["requestid"] for p in (await listing(psa, psa.alice, name="m", status="queued"))["results"]
    ] == [new["requestid"]]
