"""Keys, trust policy and pack trust over HTTP: registration, receipt-time revocation, audited policy, verdicts."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from registry.api.keys import SESSIONS
from registry.db.models import AuditEvent, Signature
from registry.trust.keys import generate_private_key, public_key_of
from registry.trust.policy import parse_policy
from registry.trust.signatures import make_signature, sign_manifest
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARDS = [("model-00001-of-00001.safetensors", helpers.shard_bytes(5000, 7))]
H = helpers.bearer


async def _register(reg: Registry, tok: str, key: Any) -> tuple[int, dict[str, Any]]:
    r = await helpers.register_key(reg.client, tok, key)
    return r.status, await r.json()


async def _publish_signed(reg: Registry, version: str, *keys: Any, detached_over: Any = None) -> Any:
    for _, data in SHARDS:
        await helpers.upload(reg.client, reg.alice, data)
    doc = helpers.manifest(SHARDS, version=version)
    for k in keys:
        doc = sign_manifest(doc, k)
    body: dict[str, Any] = {"manifest": doc}
    if detached_over is not None:
        body["signatures"] = [make_signature(detached_over[1], detached_over[0]).to_json()]
    return await helpers.publish(reg.client, reg.alice, "acme/tiny", body)


async def _trust(reg: Registry, cid: str) -> dict[str, Any]:
    r = await reg.client.get(f"/v1/packs/{cid}/trust")
    assert r.status == 200, await r.text()
    out: dict[str, Any] = await r.json()
    return out


async def test_register_is_idempotent_per_publisher_and_refuses_others(reg: Registry) -> None:
    key = generate_private_key()
    status, out = await _register(reg, reg.alice, key)
    assert status == 201 and out["key_id"] == public_key_of(key).key_id and out["publisher"] == "alice"
    assert (await _register(reg, reg.alice, key))[0] == 200
    bob = await helpers.token(reg.client.app, "bob", ["other"])
    status, err = await _register(reg, bob, key)
    assert status == 409 and err["error"]["code"] == "conflict"
    r = await reg.client.post("/v1/key-challenges", json={"public_key": "bm9wZQ=="}, headers=H(reg.alice))
    assert r.status == 400 and (await r.json())["error"]["code"] == "bad_public_key"
    nope = {"public_key": "bm9wZQ==", "challenge": "mpkc1.x", "signature": "AAAA"}
    r = await reg.client.post("/v1/keys", json=nope, headers=H(reg.alice))
    assert r.status == 400 and (await r.json())["error"]["code"] == "bad_public_key"
    r = await reg.client.post("/v1/keys", json={"public_key": "x", "label": 1}, headers=H(reg.alice))
    assert r.status == 400
    r = await reg.client.post("/v1/keys", json={"public_key": public_key_of(key).b64})
    assert r.status == 401
    r = await reg.client.post("/v1/key-challenges", json={"public_key": public_key_of(key).b64})
    assert r.status == 401
    r = await reg.client.get(f"/v1/keys/{out['key_id']}")
    assert r.status == 200 and (await r.json())["public_key"] == public_key_of(key).b64
    assert (await reg.client.get("/v1/keys/ed25519:nope")).status == 404


async def test_list_keys_by_publisher_with_pages(reg: Registry) -> None:
    ids = sorted([(await _register(reg, reg.alice, generate_private_key()))[1]["key_id"] for _ in range(3)])
    r = await reg.client.get("/v1/keys", params={"publisher": "alice", "limit": "2"})
    page = await r.json()
    assert [k["key_id"] for k in page["items"]] == ids[:2] and page["next_cursor"]
    page2 = await (
        await reg.client.get("/v1/keys", params={"publisher": "alice", "cursor": page["next_cursor"]})
    ).json()
    assert [k["key_id"] for k in page2["items"]] == ids[2:] and page2["next_cursor"] is None
    assert (await reg.client.get("/v1/keys", params={"publisher": "ghost"})).status == 404


async def test_policy_needs_admin_and_every_change_is_audited(reg: Registry) -> None:
    kid = (await _register(reg, reg.alice, generate_private_key()))[1]["key_id"]
    body = {"keys": [kid], "publishers": ["alice"], "required_signatures": 2, "reason": "two-person rule"}
    r = await reg.client.put("/v1/namespaces/acme/policy", json=body, headers=H(reg.alice))
    assert r.status == 403
    for bad, code in (
        ({"keys": ["ed25519:" + "0" * 64]}, 400),
        ({"required_signatures": 0}, 400),
        ({"publishers": ["nobody"]}, 400),
        ({"extra": True}, 400),
    ):
        r = await reg.client.put("/v1/namespaces/acme/policy", json=bad, headers=H(reg.admin))
        assert r.status == code, (bad, await r.text())
    assert (await reg.client.put("/v1/namespaces/nope/policy", json={}, headers=H(reg.admin))).status == 404
    r = await reg.client.put("/v1/namespaces/acme/policy", json=body, headers=H(reg.admin))
    assert r.status == 200
    got = await (await reg.client.get("/v1/namespaces/acme/policy")).json()
    assert got["required_signatures"] == 2 and got["publishers"] == ["alice"]
    assert [k["key_id"] for k in got["keys"]] == [kid] == [k["key_id"] for k in got["publisher_keys"]]
    file_form = await (await reg.client.get("/v1/namespaces/acme/policy/file")).json()
    ns_policy = parse_policy(file_form).for_namespace("acme")
    assert ns_policy is not None and ns_policy.required_signatures == 2 and set(ns_policy.keyring()) == {kid}
    async with reg.client.app[SESSIONS]() as s:
        events = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "trust_policy.set")))
            .scalars()
            .all()
        )
    assert len(events) == 1 and events[0].reason == "two-person rule"
    assert events[0].details is not None and events[0].details["after"]["keys"] == [kid]


async def test_pack_trust_follows_policy_and_revocation_by_receipt_time(reg: Registry) -> None:
    k_alice, k_stranger = generate_private_key(), generate_private_key()
    kid = (await _register(reg, reg.alice, k_alice))[1]["key_id"]
    await reg.client.put("/v1/namespaces/acme/policy", json={"publishers": ["alice"]}, headers=H(reg.admin))

    r = await _publish_signed(reg, "1.0.0", k_alice)
    assert r.status == 201
    signed = (await r.json())["cid"]
    unsigned = (await (await _publish_signed(reg, "1.0.1")).json())["cid"]
    stranger = (await (await _publish_signed(reg, "1.0.2", k_stranger)).json())["cid"]
    v = await _trust(reg, signed)
    assert v["satisfied"] and v["trusted_valid"] == [kid] and v["signatures"][0]["trusted"]
    assert not (await _trust(reg, unsigned))["satisfied"]
    v = await _trust(reg, stranger)
    assert not v["satisfied"] and v["signatures"][0]["verdict"] == "unknown_key"

    # the owner revokes now: the earlier signature stays valid, a later one is judged revoked
    r = await reg.client.post(f"/v1/keys/{kid}/revoke", json={"reason": "rotated"}, headers=H(reg.alice))
    assert r.status == 200, await r.text()
    assert (await r.json())["affected_packs"] == []
    after = await _publish_signed(reg, "1.0.3", k_alice)
    assert after.status == 201  # stored, never curated
    late = (await after.json())["cid"]
    v = await _trust(reg, late)
    assert not v["satisfied"] and v["signatures"][0]["verdict"] == "revoked"
    assert (await _trust(reg, signed))["satisfied"]


async def test_backdated_revocation_is_admin_only_and_rejudges_stored_signatures(reg: Registry) -> None:
    key = generate_private_key()
    kid = (await _register(reg, reg.alice, key))[1]["key_id"]
    await reg.client.put("/v1/namespaces/acme/policy", json={"keys": [kid]}, headers=H(reg.admin))
    cid = (await (await _publish_signed(reg, "2.0.0", key)).json())["cid"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = await reg.client.post(
        f"/v1/keys/{kid}/revoke", json={"reason": "leak", "at": past}, headers=H(reg.alice)
    )
    assert r.status == 403
    r = await reg.client.post(
        f"/v1/keys/{kid}/revoke", json={"reason": "leak", "at": "2020-01-01T00:00:00"}, headers=H(reg.admin)
    )
    assert r.status == 400  # a time without a zone is refused
    r = await reg.client.post(
        f"/v1/keys/{kid}/revoke", json={"reason": "leak", "at": past}, headers=H(reg.admin)
    )
    out = await r.json()
    assert r.status == 200 and out["affected_packs"] == [cid] and out["revalidated_signatures"] == 1
    assert not (await _trust(reg, cid))["satisfied"]
    detail = await (await reg.client.get(f"/v1/packs/{cid}")).json()
    assert [s["verdict"] for s in detail["signatures"]] == ["revoked"]
    r = await reg.client.post(f"/v1/keys/{kid}/revoke", json={"reason": "again"}, headers=H(reg.admin))
    assert r.status == 409
    async with reg.client.app[SESSIONS]() as s:
        actions = sorted(e.action for e in (await s.execute(select(AuditEvent))).scalars())
        rows = (await s.execute(select(Signature))).scalars().all()
    assert actions == ["key.register", "key.revoke", "trust_policy.set"] and len(rows) == 1


async def test_a_signature_over_a_different_manifest_is_refused_naming_the_key(reg: Registry) -> None:
    key = generate_private_key()
    kid = (await _register(reg, reg.alice, key))[1]["key_id"]
    other = helpers.manifest(SHARDS, version="9.9.9")
    r = await _publish_signed(reg, "3.0.0", detached_over=(key, other))
    err = (await r.json())["error"]
    assert r.status == 422 and err["code"] == "bad_signature" and err["details"]["key_id"] == kid
    assert (
        await reg.client.get("/v1/packs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy/trust")
    ).status == 404


async def test_registration_over_http_needs_proof_of_possession(reg: Registry) -> None:
    key = generate_private_key()
    body = {"public_key": public_key_of(key).b64}
    r = await reg.client.post("/v1/keys", json=body, headers=H(reg.alice))
    assert r.status == 400  # no challenge, no signature
    r = await reg.client.post("/v1/key-challenges", json=body, headers=H(reg.alice))
    ch = await r.json()
    assert r.status == 200 and ch["key_id"] == public_key_of(key).key_id and ch["publisher"] == "alice"
    wrong = helpers.prove_key(ch, generate_private_key())
    r = await reg.client.post(
        "/v1/keys", json={**wrong, "public_key": body["public_key"]}, headers=H(reg.alice)
    )
    err = await r.json()
    assert r.status == 400 and err["error"]["code"] == "key_proof_invalid", err
    assert err["error"]["details"]["reason"] == "bad_signature"
    r = await reg.client.post("/v1/keys", json=helpers.prove_key(ch, key), headers=H(reg.alice))
    assert r.status == 201
    r = await reg.client.post("/v1/keys", json=helpers.prove_key(ch, key), headers=H(reg.alice))
    err = await r.json()
    assert r.status == 400 and err["error"]["details"]["reason"] == "bad_challenge", err
    assert "already used" in err["error"]["message"]
    identity = base64.b64encode(bytes([1]) + bytes(31)).decode()
    r = await reg.client.post("/v1/key-challenges", json={"public_key": identity}, headers=H(reg.alice))
    err = await r.json()
    assert (
        r.status == 400
        and err["error"]["code"] == "bad_public_key"
        and "small-order" in err["error"]["message"]
    )
