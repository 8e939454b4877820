"""Every value the API accepts fits its column (issue 12 item 15): no 500 on Postgres at the limits."""

from __future__ import annotations

import os

from sqlalchemy import select

from registry.api.keys import SESSIONS
from registry.db.models import Publisher, Signature, SigningKey
from registry.trust.keys import generate_private_key, public_key_of
from registry.trust.signatures import make_signature
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARDS = [("model.safetensors", helpers.shard_bytes(3000, 11))]


async def test_the_longest_revocation_reason_the_api_accepts_is_stored(reg: Registry) -> None:
    key = public_key_of(generate_private_key())
    async with reg.client.app[SESSIONS]() as s, s.begin():
        alice = (await s.execute(select(Publisher.id).where(Publisher.name == "alice"))).scalar_one()
        s.add(SigningKey(key_id=key.key_id, publisher_id=alice, public_key=key.raw))
    reason = "r" * 1024  # RevokeIn and trust.max_reason_len allow 1024 characters
    r = await reg.client.post(
        f"/v1/keys/{key.key_id}/revoke", json={"reason": reason}, headers=helpers.bearer(reg.alice)
    )
    assert r.status == 200, await r.text()
    async with reg.client.app[SESSIONS]() as s:
        assert (await s.get(SigningKey, key.key_id)).revocation_reason == reason  # type: ignore[union-attr]


async def test_a_signature_with_an_overlong_key_id_is_refused_not_a_500(reg: Registry) -> None:
    for _, data in SHARDS:
        await helpers.upload(reg.client, reg.alice, data)
    doc = helpers.manifest(SHARDS)
    sig = make_signature(doc, generate_private_key()).to_json()
    long_id = "ed25519:" + os.urandom(146).hex()  # 300 characters
    for key_id, stored in ((long_id, False), ("ed25519:" + "ab" * 60, True)):  # 128: the longest stored
        entry = {**sig, "key_id": key_id}
        r = await helpers.publish(
            reg.client, reg.alice, "acme/tiny", {"manifest": doc, "signatures": [entry]}
        )
        if not stored:
            err = (await r.json())["error"]
            assert r.status == 422 and err["code"] == "bad_signature", err
            assert "longer than 128" in err["message"] and len(err["message"]) < 400
        else:
            assert r.status == 201, await r.text()
    async with reg.client.app[SESSIONS]() as s:
        assert [k for k in (await s.execute(select(Signature.key_id))).scalars()] == ["ed25519:" + "ab" * 60]
