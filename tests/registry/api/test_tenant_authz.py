"""Tenant authorization (issue #12 item 1): a namespace admin administers only its namespaces.

The attack chain: ``alice``'s admin token for ``acme`` (what the README walk-through makes) must not reach
``beta``, mint a broader token, act as another publisher or manage nodes; ``namespaces: []`` grants nothing;
a ``read`` token reads under ``server.read_requires_token`` but cannot write; ``pin`` grants nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app.daemon import build_app
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

H = helpers.bearer
SHARDS = [("a.safetensors", b"beta weights 1")]
MODEL = {"model_name": "tiny"}


@dataclass
class Tenants:
    reg: Registry
    acme_admin: str  # alice, admin scope, namespaces ["acme"]
    bob: str  # publish in beta
    beta_cid: str


@pytest.fixture
async def tenants(reg: Registry) -> Tenants:
    app = reg.client.app
    acme_admin = await helpers.token(app, "alice", ["acme"], scopes=("admin",))
    bob = await helpers.token(app, "bob", ["beta"])
    out = await helpers.upload_and_publish(
        reg.client, bob, "beta/tiny", SHARDS, tag="stable", manifest_extra=MODEL
    )
    return Tenants(reg, acme_admin, bob, out["cid"])


async def _mint(client: TestClient, tok: str, **body: Any) -> tuple[int, Any]:
    r = await client.post("/v1/tokens", json=body, headers=H(tok))
    return r.status, await r.json()


async def _whoami_id(client: TestClient, tok: str) -> int:
    out: int = (await (await client.get("/v1/whoami", headers=H(tok))).json())["token_id"]
    return out


async def test_a_namespace_admin_cannot_mint_a_global_or_foreign_token(tenants: Tenants) -> None:
    c, tok = tenants.reg.client, tenants.acme_admin
    status, body = await _mint(c, tok, publisher="alice", scopes=["admin"])  # no list: global admin
    assert status == 403 and body["error"]["code"] == "forbidden", body
    status, body = await _mint(c, tok, publisher="mallory", namespaces=["acme"])  # another publisher
    assert status == 403 and "mallory" in body["error"]["message"], body
    status, body = await _mint(c, tok, publisher="bob", namespaces=["beta"], scopes=["admin"])
    assert status == 403, body
    status, body = await _mint(c, tok, publisher="alice", namespaces=["acme", "beta"])  # wider list
    assert status == 403 and "beta" in body["error"]["message"], body
    status, body = await _mint(c, tok, publisher="alice", namespaces=["acme"], scopes=["pin"])  # new scope
    assert status == 403 and "pin" in body["error"]["message"], body
    # narrower is fine: its own publisher, its namespaces, scopes it has
    status, body = await _mint(c, tok, publisher="alice", namespaces=["acme"], scopes=["publish", "read"])
    assert status == 201 and body["namespaces"] == ["acme"], body
    # the global admin still issues anything
    status, body = await _mint(c, tenants.reg.admin, publisher="carol", scopes=["admin"])
    assert status == 201 and body["namespaces"] is None, body


async def test_a_namespace_admin_cannot_touch_another_namespace(tenants: Tenants) -> None:
    c, tok = tenants.reg.client, tenants.acme_admin
    r = await c.put("/v1/namespaces/beta/policy", json={"publishers": ["alice"]}, headers=H(tok))
    assert r.status == 403, await r.text()
    before = await helpers.counts(c)
    r = await helpers.publish(c, tok, "beta/tiny", {"manifest": helpers.manifest(SHARDS, "2.0.0", **MODEL)})
    assert r.status == 403, await r.text()
    assert await helpers.counts(c) == before
    r = await c.put("/v1/models/beta/tiny/pointers/prod", json={"cid": tenants.beta_cid}, headers=H(tok))
    assert r.status == 403, await r.text()
    r = await c.post(f"/v1/packs/{tenants.beta_cid}/uncurate", json={"reason": "x"}, headers=H(tok))
    assert r.status == 403, await r.text()
    r = await c.post(f"/v1/packs/{tenants.beta_cid}/curate", json={"reason": "x"}, headers=H(tok))
    assert r.status == 403, await r.text()
    r = await c.post(f"/v1/packs/{tenants.beta_cid}/validate", headers=H(tok))
    assert r.status == 403, await r.text()
    # its own namespace still works: a policy for acme
    r = await c.put("/v1/namespaces/acme/policy", json={"publishers": ["alice"]}, headers=H(tok))
    assert r.status == 200, await r.text()
    # and the global admin may change beta's
    r = await c.put("/v1/namespaces/beta/policy", json={"publishers": ["bob"]}, headers=H(tenants.reg.admin))
    assert r.status == 200, await r.text()


async def test_node_management_needs_a_global_admin(tenants: Tenants) -> None:
    c, tok = tenants.reg.client, tenants.acme_admin
    node = {"name": "evil", "kind": "kubo", "url": "http://127.0.0.1:9"}
    for method, path, body in (
        ("POST", "/v1/nodes", node),
        ("POST", "/v1/nodes/evil/drain", {"draining": True}),
        ("DELETE", "/v1/nodes/evil", None),
    ):
        r = await c.request(method, path, json=body, headers=H(tok))
        assert r.status == 403, (method, path, await r.text())
        assert "global admin" in (await r.json())["error"]["message"]
    r = await c.delete("/v1/nodes/evil", headers=H(tenants.reg.admin))
    assert r.status == 404  # the global admin gets past authorization


async def test_token_revocation_stays_within_the_admins_namespaces(tenants: Tenants) -> None:
    c, tok = tenants.reg.client, tenants.acme_admin
    bob_id = await _whoami_id(c, tenants.bob)
    root_id = await _whoami_id(c, tenants.reg.admin)
    carol = await helpers.token(c.app, "carol", ["acme"])
    carol_id = await _whoami_id(c, carol)
    listed = {t["id"] for t in (await (await c.get("/v1/tokens", headers=H(tok))).json())["items"]}
    assert carol_id in listed and bob_id not in listed and root_id not in listed
    assert (await c.delete(f"/v1/tokens/{bob_id}", headers=H(tok))).status == 404
    assert (await c.delete(f"/v1/tokens/{root_id}", headers=H(tok))).status == 404
    assert (await c.delete(f"/v1/tokens/{carol_id}", headers=H(tok))).status == 200
    assert (await c.get("/v1/whoami", headers=H(carol))).status == 401
    assert (await c.get("/v1/whoami", headers=H(tenants.bob))).status == 200


async def test_an_empty_namespace_list_means_none(tenants: Tenants) -> None:
    c, root = tenants.reg.client, tenants.reg.admin
    status, body = await _mint(c, root, publisher="bob", namespaces=[])
    assert status == 201 and body["namespaces"] == [], body
    none_tok = body["token"]
    me = await (await c.get("/v1/whoami", headers=H(none_tok))).json()
    assert me["namespaces"] == []
    r = await helpers.publish(
        c, none_tok, "beta/tiny", {"manifest": helpers.manifest(SHARDS, "3.0.0", **MODEL)}
    )
    assert r.status == 403, await r.text()  # bob is a member of beta, but this token covers nothing
    status, body = await _mint(c, root, publisher="erin", namespaces=[], scopes=["admin"])
    assert status == 201 and body["namespaces"] == [], body
    empty_admin = body["token"]
    r = await c.put("/v1/namespaces/acme/policy", json={"publishers": ["alice"]}, headers=H(empty_admin))
    assert r.status == 403, await r.text()
    status, body = await _mint(c, empty_admin, publisher="erin", scopes=["admin"])
    assert status == 403, body
    r = await c.delete("/v1/nodes/any", headers=H(empty_admin))
    assert r.status == 403


def _private(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"read_requires_token": True}),
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
        }
    )


@pytest.fixture
async def private(settings: Settings) -> AsyncIterator[tuple[TestClient, str]]:
    app = build_app(_private(settings))
    async with TestClient(TestServer(app)) as client:
        yield client, await helpers.token(app, "root", scopes=("admin",))


async def test_a_read_token_reads_but_cannot_write_and_pin_grants_nothing(
    private: tuple[TestClient, str],
) -> None:
    c, root = private
    status, body = await _mint(c, root, publisher="reader", namespaces=["acme"], scopes=["read"])
    assert status == 201 and body["scopes"] == ["read"], body
    reader = body["token"]
    status, body = await _mint(c, root, publisher="pinner", scopes=["pin"])
    assert status == 201 and body["scopes"] == ["pin"], body
    pinner = body["token"]
    assert (await c.get("/v1/models")).status == 401
    assert (await c.get("/v1/models", headers=H(reader))).status == 200
    r = await c.get("/v1/models", headers=H(pinner))
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    for tok in (reader, pinner):
        r = await helpers.upload(c, tok, SHARDS[0][1])
        assert r.status == 403, await r.text()
        r = await helpers.publish(c, tok, "acme/tiny", {"manifest": helpers.manifest(SHARDS, **MODEL)})
        assert r.status == 403, await r.text()
        r = await c.put("/v1/namespaces/acme/policy", json={"publishers": ["reader"]}, headers=H(tok))
        assert r.status == 403, await r.text()
        status, _ = await _mint(c, tok, publisher="reader", namespaces=["acme"], scopes=["read"])
        assert status == 403
    # a read token may revoke itself, not its publisher's other tokens
    other = await helpers.token(c.app, "reader", ["acme"])
    other_id = await _whoami_id(c, other)
    assert (await c.delete(f"/v1/tokens/{other_id}", headers=H(reader))).status == 404
    assert (await c.delete(f"/v1/tokens/{await _whoami_id(c, reader)}", headers=H(reader))).status == 200
