"""Key registry, revocation by receipt time, trust policy with audit, and the curation trust verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.models import AuditEvent, Signature, SignatureVerdict
from registry.errors import BadRequest, Conflict, Forbidden, NotFound
from registry.trust.errors import BadPublicKey
from registry.trust.keys import generate_private_key, public_key_of
from registry.trust.policies import TrustService, evaluate_pack_trust
from tests.factories import PackFactory, principal
from tests.registry.api.helpers import register_key_with


@pytest.fixture
def trust(sessions: async_sessionmaker[AsyncSession]) -> TrustService:
    return TrustService(sessions)


async def test_register_list_and_idempotent_reregister(sessions, trust: TrustService) -> None:
    alice = await principal(sessions, "alice", ["acme"])
    key = generate_private_key()
    view, created = await register_key_with(trust, alice, key)
    assert created and view.key_id == public_key_of(key).key_id and view.publisher == "alice"
    again, created_again = await register_key_with(trust, alice, key, public_key_of(key).to_pem().decode())
    assert not created_again and again.key_id == view.key_id
    assert [k.key_id for k in await trust.list_keys("alice", after=None, limit=10)] == [view.key_id]
    with pytest.raises(NotFound):
        await trust.list_keys("nobody", after=None, limit=10)


async def test_register_refuses_another_publishers_key_and_garbage(sessions, trust: TrustService) -> None:
    alice = await principal(sessions, "alice", ["acme"])
    bob = await principal(sessions, "bob", ["other"])
    key = generate_private_key()
    await register_key_with(trust, alice, key)
    with pytest.raises(Conflict):
        await register_key_with(trust, bob, key)
    with pytest.raises(BadPublicKey):
        await trust.issue_challenge(alice, "not a key")
    with pytest.raises(BadPublicKey):
        await trust.register_key(alice, "not a key", "mpkc1.x", "AAAA")
    assert len(await trust.list_keys(None, after=None, limit=10)) == 1


async def test_revoked_key_signature_after_revocation_is_invalid_before_stays_valid(
    sessions, trust: TrustService, pack_factory: PackFactory
) -> None:
    admin = await principal(sessions, "root", scopes=("admin",))
    alice = await principal(sessions, "alice", ["acme"])
    key = generate_private_key()
    kid = (await register_key_with(trust, alice, key))[0].key_id
    await trust.set_policy(admin, "acme", keys=[kid], publishers=[], required_signatures=1)
    before = await pack_factory.make("acme/tiny", "1", signers=[key])
    revoked_from = utcnow()  # after the first publish was received, before the second one
    after = await pack_factory.make("acme/tiny", "2", signers=[key])

    result = await trust.revoke_key(admin, kid, "laptop stolen", revoked_from)
    assert result.affected_packs == (after,) and result.revalidated_signatures == 1

    ok = await trust.pack_trust(before)
    assert ok.satisfied and ok.trusted_valid == (kid,)
    bad = await trust.pack_trust(after)
    assert not bad.satisfied and bad.signatures[0].verdict == "revoked"
    assert any("revoked" in r for r in bad.reasons)
    async with sessions() as s:
        verdicts = {r.pack_cid: r.verdict for r in (await s.execute(select(Signature))).scalars()}
        events = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "key.revoke"))).scalars().all()
        )
    assert verdicts == {before: SignatureVerdict.VALID, after: SignatureVerdict.REVOKED}
    assert len(events) == 1 and events[0].reason == "laptop stolen"


async def test_only_admins_revoke_in_the_past_and_revocation_never_moves_later(sessions, trust) -> None:
    alice = await principal(sessions, "alice", ["acme"])
    bob = await principal(sessions, "bob", ["acme"])
    key = generate_private_key()
    kid = (await register_key_with(trust, alice, key))[0].key_id
    with pytest.raises(Forbidden):
        await trust.revoke_key(alice, kid, "oops", utcnow() - timedelta(days=1))
    with pytest.raises(NotFound):  # not bob's key
        await trust.revoke_key(bob, kid, "mine now")
    with pytest.raises(BadRequest):
        await trust.revoke_key(alice, kid, "  ")
    done = await trust.revoke_key(alice, kid, "rotated")
    assert done.key.revoked_at is not None and done.key.revocation_reason == "rotated"
    with pytest.raises(Conflict):
        await trust.revoke_key(alice, kid, "again", utcnow() + timedelta(days=1))


async def test_policy_set_is_audited_and_checked(sessions, trust: TrustService) -> None:
    admin = await principal(sessions, "root", scopes=("admin",))
    alice = await principal(sessions, "alice", ["acme"])
    scoped_admin = await principal(sessions, "carol", ["other"], scopes=("admin",))
    key = generate_private_key()
    kid = (await register_key_with(trust, alice, key))[0].key_id
    for who in (alice, scoped_admin):
        with pytest.raises(Forbidden):
            await trust.set_policy(who, "acme", keys=[kid], publishers=[])
    with pytest.raises(BadRequest):
        await trust.set_policy(admin, "acme", keys=["ed25519:" + "0" * 64], publishers=[])
    with pytest.raises(BadRequest):
        await trust.set_policy(admin, "acme", keys=[], publishers=["nobody"])
    with pytest.raises(BadRequest):
        await trust.set_policy(admin, "acme", keys=[kid], publishers=[], required_signatures=0)
    with pytest.raises(NotFound):
        await trust.set_policy(admin, "nowhere", keys=[], publishers=[])
    assert (await trust.get_policy("acme")).required_signatures == 1

    view = await trust.set_policy(
        admin, "acme", keys=[kid], publishers=["alice"], required_signatures=2, reason="r"
    )
    assert view.required_signatures == 2 and view.publishers == ("alice",)
    assert [k.key_id for k in view.keys] == [kid] and [k.key_id for k in view.publisher_keys] == [kid]
    assert view.namespace_policy().keyring().keys() == {kid}
    async with sessions() as s:
        ev = (await s.execute(select(AuditEvent).where(AuditEvent.action == "trust_policy.set"))).scalar_one()
    assert ev.subject == "namespace:acme" and ev.actor == "root" and ev.reason == "r"
    assert ev.details == {
        "before": {"required_signatures": 1, "keys": [], "publishers": [], "max_drift": None},
        "after": {"required_signatures": 2, "keys": [kid], "publishers": ["alice"], "max_drift": None},
    }


async def test_verdict_counts_distinct_trusted_valid_keys(
    sessions, trust: TrustService, pack_factory: PackFactory
) -> None:
    admin = await principal(sessions, "root", scopes=("admin",))
    alice = await principal(sessions, "alice", ["acme"])
    bob = await principal(sessions, "bob", ["acme"])
    k_alice, k_bob, k_stranger = generate_private_key(), generate_private_key(), generate_private_key()
    # Published while no key is registered: publish refuses a known key's bad signature, so the
    # forged pack can only exist from before its signers registered their keys.
    unsigned = await pack_factory.make("acme/tiny", "0")
    one = await pack_factory.make("acme/tiny", "1", signers=[k_alice, k_stranger])
    two = await pack_factory.make("acme/tiny", "2", signers=[k_alice, k_bob])
    other = await pack_factory.manifest("3")
    forged = await pack_factory.publish(
        "acme/tiny", other, signers=[k_alice, k_bob], sign_over=await pack_factory.manifest("4")
    )
    await register_key_with(trust, alice, k_alice)
    await register_key_with(trust, bob, k_bob)
    await trust.set_policy(admin, "acme", keys=[], publishers=["alice", "bob"], required_signatures=2)

    v = await trust.pack_trust(unsigned)
    assert not v.satisfied and v.reasons[0] == "the pack carries no signatures"
    v = await trust.pack_trust(one)
    assert not v.satisfied and v.required == 2 and len(v.trusted_valid) == 1
    assert any("unknown_key" in r for r in v.reasons)
    assert (await trust.pack_trust(two)).satisfied
    v = await trust.pack_trust(forged)  # signatures over a different manifest
    assert not v.satisfied and {j.verdict for j in v.signatures} == {"bad_signature"}
    with pytest.raises(NotFound):
        await trust.pack_trust("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")


async def test_key_registered_after_publish_counts(
    sessions, trust: TrustService, pack_factory: PackFactory
) -> None:
    admin = await principal(sessions, "root", scopes=("admin",))
    alice = await principal(sessions, "alice", ["acme"])
    key = generate_private_key()
    cid = await pack_factory.make("acme/tiny", "1", signers=[key])
    async with sessions() as s:
        assert not (await evaluate_pack_trust(s, cid)).satisfied
    await register_key_with(trust, alice, key)
    await trust.set_policy(admin, "acme", keys=[], publishers=["alice"])
    async with sessions() as s:
        assert (await evaluate_pack_trust(s, cid)).satisfied


async def test_dsse_rows_count_and_a_wrong_payload_type_does_not(
    sessions, trust: TrustService, pack_factory: PackFactory
) -> None:
    import base64

    from registry.db.base import utcnow as now
    from registry.trust.dsse import make_envelope

    admin = await principal(sessions, "root", scopes=("admin",))
    alice = await principal(sessions, "alice", ["acme"])
    key = generate_private_key()
    kid = (await register_key_with(trust, alice, key))[0].key_id
    await trust.set_policy(admin, "acme", keys=[kid], publishers=[])
    verdicts = {}
    for version, payload_type in (("1", None), ("2", "application/json")):
        doc = await pack_factory.manifest(version)
        cid = await pack_factory.publish("acme/tiny", doc)
        env = make_envelope(doc, [key])
        if payload_type:
            env["payloadType"] = payload_type
        async with sessions() as s, s.begin():
            s.add(
                Signature(
                    pack_cid=cid,
                    key_id=kid,
                    kind="dsse",
                    algorithm="ed25519",
                    signature=base64.b64decode(env["signatures"][0]["sig"]),
                    envelope=env,
                    verdict=SignatureVerdict.VALID,
                    received_at=now(),
                )
            )
        verdicts[version] = await trust.pack_trust(cid)
    assert verdicts["1"].satisfied and verdicts["1"].signatures[0].kind == "dsse"
    bad = verdicts["2"]
    assert not bad.satisfied and bad.signatures[0].verdict == "malformed"
    assert "payload type" in bad.signatures[0].reason or "application/json" in bad.signatures[0].reason
