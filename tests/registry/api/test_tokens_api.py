"""Tokens over HTTP: admin issues, secrets shown once and stored hashed, list/revoke, last-used time."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from registry.api.keys import SESSIONS
from registry.db.models import ApiToken
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry


async def test_admin_issues_a_token_that_works_and_is_stored_hashed(reg: Registry) -> None:
    r = await reg.client.post(
        "/v1/tokens", json={"publisher": "carol", "namespaces": ["gamma"]}, headers=helpers.bearer(reg.admin)
    )
    assert r.status == 201
    issued = await r.json()
    secret = issued["token"]
    assert secret.startswith("mpk_") and issued["scopes"] == ["publish"] and issued["namespaces"] == ["gamma"]
    me = await (await reg.client.get("/v1/whoami", headers=helpers.bearer(secret))).json()
    assert me["publisher"] == "carol" and me["namespaces"] == ["gamma"]
    async with reg.client.app[SESSIONS]() as s:
        row = (await s.execute(select(ApiToken).where(ApiToken.id == issued["id"]))).scalar_one()
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest() and secret not in (row.prefix + "x")
    assert row.last_used_at is not None
    listed = (await (await reg.client.get("/v1/tokens", headers=helpers.bearer(secret))).json())["items"]
    assert [t["id"] for t in listed] == [issued["id"]] and "token" not in listed[0]
    out = await helpers.upload_and_publish(reg.client, secret, "gamma/m", [("a.safetensors", b"12345678")])
    assert out["created"]


async def test_publishers_cannot_issue_tokens_or_revoke_others(reg: Registry) -> None:
    r = await reg.client.post(
        "/v1/tokens", json={"publisher": "eve", "scopes": ["admin"]}, headers=helpers.bearer(reg.alice)
    )
    assert r.status == 403
    admin_id = (await (await reg.client.get("/v1/whoami", headers=helpers.bearer(reg.admin))).json())[
        "token_id"
    ]
    r = await reg.client.delete(f"/v1/tokens/{admin_id}", headers=helpers.bearer(reg.alice))
    assert r.status == 404
    r = await reg.client.post(
        "/v1/tokens", json={"publisher": "eve", "scopes": ["root"]}, headers=helpers.bearer(reg.admin)
    )
    assert r.status == 400
    r = await reg.client.post("/v1/tokens", json={"publisher": "Bad Name"}, headers=helpers.bearer(reg.admin))
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_name"
    assert (await reg.client.delete("/v1/tokens/abc", headers=helpers.bearer(reg.admin))).status == 404
