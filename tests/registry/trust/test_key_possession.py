"""Signing keys: weak Ed25519 points and malleable signatures refused, proof of possession at registration,
and a token's namespace list bounding key operations."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from registry.db.base import utcnow
from registry.errors import Forbidden, NotFound
from registry.trust.errors import BadPublicKey, KeyProofInvalid
from registry.trust.key_challenge import Challenges
from registry.trust.keys import PublicKey, generate_private_key, parse_public_key, public_key_of
from registry.trust.policies import TrustService
from tests.factories import principal
from tests.registry.api.helpers import register_key_with

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes([1]) + bytes(31)
SMALL_ORDER = [
    IDENTITY,
    (P - 1).to_bytes(32, "little"),  # order 2
    bytes(32),  # order 4
    bytes(31) + b"\x80",  # order 4, the other x
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    IDENTITY[:31] + b"\x80",  # the identity with the sign bit set (x = -0)
]
NON_CANONICAL = [(P + 1).to_bytes(32, "little"), P.to_bytes(32, "little"), b"\xff" * 31 + b"\x7f"]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_the_identity_key_verifies_nothing() -> None:
    forged = IDENTITY + bytes(32)  # R = identity, S = 0: "valid" for every message under A = identity
    for message in (b"", b"any manifest", b"\x00" * 100):
        assert not PublicKey(IDENTITY).verify(forged, message)


@pytest.mark.parametrize("raw", SMALL_ORDER + NON_CANONICAL, ids=lambda r: r.hex()[:8] + r.hex()[-4:])
def test_small_order_and_non_canonical_keys_are_refused(raw: bytes) -> None:
    with pytest.raises(BadPublicKey) as e:
        parse_public_key(_b64(raw))
    assert _b64(raw) in e.value.message


def test_a_signature_with_unreduced_s_is_refused() -> None:
    key = generate_private_key()
    sig = key.sign(b"m")
    assert public_key_of(key).verify(sig, b"m")
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    assert not public_key_of(key).verify(sig[:32] + s.to_bytes(32, "little"), b"m")
    assert not public_key_of(key).verify(sig[:63], b"m")


async def test_registration_needs_a_signature_by_the_key_over_a_fresh_challenge(sessions) -> None:
    trust = TrustService(sessions)
    alice = await principal(sessions, "alice", ["acme"])
    bob = await principal(sessions, "bob", ["beta"])
    key, other = generate_private_key(), generate_private_key()
    pub = public_key_of(key).b64
    _, ch = await trust.issue_challenge(alice, pub)
    assert b"publisher: alice" in ch.statement and public_key_of(key).key_id.encode() in ch.statement

    def sig(k, msg: bytes = ch.statement) -> str:
        return base64.b64encode(k.sign(msg)).decode()

    with pytest.raises(
        KeyProofInvalid, match="does not verify"
    ):  # signed by a key the registrant holds instead
        await trust.register_key(alice, pub, ch.challenge, sig(other))
    with pytest.raises(KeyProofInvalid, match="64 bytes"):
        await trust.register_key(alice, pub, ch.challenge, "")
    # bob cannot use alice's challenge (nor its signature): the statement names alice
    with pytest.raises(KeyProofInvalid):
        await trust.register_key(bob, pub, ch.challenge, sig(key))
    view, created = await trust.register_key(alice, pub, ch.challenge, sig(key))
    assert created and view.publisher == "alice"
    with pytest.raises(KeyProofInvalid, match="already used"):
        await trust.register_key(alice, pub, ch.challenge, sig(key))
    # a challenge for another key does not register this one
    _, ch2 = await trust.issue_challenge(alice, public_key_of(other).b64)
    forged = trust.challenges.statement("alice", public_key_of(key).key_id, ch2.challenge)
    with pytest.raises(KeyProofInvalid, match="not issued"):
        await trust.register_key(alice, pub, ch2.challenge, sig(key, forged))


def test_challenges_expire_and_are_bound_to_the_secret() -> None:
    c = Challenges(b"k" * 32, ttl_s=60)
    ch = c.issue(1, "alice", "ed25519:ab", now=1000.0)
    with pytest.raises(Exception, match="expired"):
        c.redeem(ch.challenge, 1, "ed25519:ab", now=1061.0)
    with pytest.raises(Exception, match="not issued"):
        Challenges(b"j" * 32).redeem(ch.challenge, 1, "ed25519:ab", now=1001.0)
    with pytest.raises(Exception, match="not one this registry issued"):
        c.redeem("mpkc1." + "x" * 500, 1, "ed25519:ab", now=1001.0)
    Challenges(b"k" * 32, ttl_s=60).redeem(
        ch.challenge, 1, "ed25519:ab", now=1001.0
    )  # another daemon, same KEK


async def test_a_namespace_token_cannot_revoke_keys_outside_its_namespaces(sessions) -> None:
    trust = TrustService(sessions)
    bob = await principal(sessions, "bob", ["beta"])
    carol = await principal(sessions, "carol", ["acme"])
    acme_admin = await principal(sessions, "alice", ["acme"], scopes=("admin",))
    root = await principal(sessions, "root", scopes=("admin",))
    bob_kid = (await register_key_with(trust, bob, generate_private_key()))[0].key_id
    carol_kid = (await register_key_with(trust, carol, generate_private_key()))[0].key_id
    with pytest.raises(NotFound):
        await trust.revoke_key(acme_admin, bob_kid, "not mine to revoke")
    assert (await trust.get_key(bob_kid)).revoked_at is None
    past = utcnow() - timedelta(days=1)
    with pytest.raises(Forbidden, match="global admin"):
        await trust.revoke_key(acme_admin, carol_kid, "backdated", at=past)
    done = await trust.revoke_key(acme_admin, carol_kid, "carol left acme")  # carol is only in acme
    assert done.key.revoked_at is not None
    done = await trust.revoke_key(root, bob_kid, "compromised last week", at=past)
    assert done.key.revoked_at == past


async def test_a_namespace_token_cannot_add_keys_that_count_in_other_namespaces(sessions) -> None:
    trust = TrustService(sessions)
    root = await principal(sessions, "root", scopes=("admin",))
    alice_acme = await principal(sessions, "alice", ["acme"])
    await principal(sessions, "bob", ["beta"])
    await register_key_with(trust, alice_acme, generate_private_key())  # nothing trusts alice yet
    await trust.set_policy(root, "beta", keys=[], publishers=["alice"], required_signatures=1)
    with pytest.raises(Forbidden, match="'beta'"):
        await register_key_with(trust, alice_acme, generate_private_key())
    alice_all = await principal(sessions, "alice")
    assert (await register_key_with(trust, alice_all, generate_private_key()))[1]
