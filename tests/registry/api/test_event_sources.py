"""#15 item 1: the other sources of events, each written with its change: a key registered and revoked, a
namespace policy changed (a refused change writes none), a node going down and up again."""

from __future__ import annotations

from typing import Any

from registry.trust.keys import generate_private_key
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

H = helpers.bearer


async def events(reg: Registry, kind: str) -> list[dict[str, Any]]:
    r = await reg.client.get(f"/v1/events?type={kind}")
    body: dict[str, Any] = await r.json()
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_keys_and_policies_write_events(reg: Registry) -> None:
    r = await helpers.register_key(reg.client, reg.alice, generate_private_key())
    kid = (await r.json())["key_id"]
    (registered,) = await events(reg, "key.registered")
    assert registered["payload"] == {"key_id": kid, "publisher": "alice"} and registered["actor"] == "alice"

    body = {"keys": [kid], "required_signatures": 1, "reason": "release key"}
    assert (await reg.client.put("/v1/namespaces/acme/policy", json=body, headers=H(reg.alice))).status == 403
    assert await events(reg, "policy.changed") == []  # a refused change writes no event
    assert (await reg.client.put("/v1/namespaces/acme/policy", json=body, headers=H(reg.admin))).status == 200
    (changed,) = await events(reg, "policy.changed")
    assert changed["namespace"] == "acme" and changed["actor"] == "root"
    assert (
        changed["payload"]["reason"] == "release key"
        and changed["payload"]["after"] != changed["payload"]["before"]
    )

    r = await reg.client.post(f"/v1/keys/{kid}/revoke", json={"reason": "rotated"}, headers=H(reg.alice))
    assert r.status == 200, await r.text()
    (revoked,) = await events(reg, "key.revoked")
    assert revoked["payload"]["key_id"] == kid and revoked["payload"]["reason"] == "rotated"
