"""Manifest signatures: what is signed, several signers, detached files, and the verdict per key."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.trust.errors import BadSignature, ManifestSignatureError
from registry.trust.keys import generate_private_key, public_key_of
from registry.trust.signatures import (
    KnownKey,
    ManifestSignature,
    NoTrustedTime,
    ReceiptTime,
    RecordedReceiptTimes,
    Verdict,
    detached_signature_json,
    keyring_of,
    make_signature,
    parse_detached_signature,
    raise_for_bad_signatures,
    sign_manifest,
    signing_payload,
    verify_manifest,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ring(*keys: Ed25519PrivateKey, revoked_at: datetime | None = None) -> dict[str, KnownKey]:
    return keyring_of(KnownKey(public_key_of(k), revoked_at) for k in keys)


def verdicts(manifest: dict[str, Any], keys: dict[str, KnownKey], **kw: Any) -> list[Verdict]:
    return [c.verdict for c in verify_manifest(manifest, keys, **kw)]


def test_payload_is_jcs_without_signature_fields(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    signed = sign_manifest(manifest, key)
    assert signing_payload(signed) == signing_payload(manifest) == rfc8785.dumps(manifest)
    # an unsigned manifest without provenance: signing adds provenance, stripping removes it again
    bare = {k: v for k, v in manifest.items() if k != "provenance"}
    assert "provenance" in sign_manifest(bare, key)
    assert signing_payload(sign_manifest(bare, key)) == rfc8785.dumps(bare)


def test_sign_and_verify(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    signed = sign_manifest(manifest, key)
    entry = signed["provenance"]["signatures"][0]
    assert entry["key_id"] == public_key_of(key).key_id and entry["algorithm"] == "ed25519"
    assert len(base64.b64decode(entry["signature"])) == 64
    assert verdicts(signed, ring(key)) == [Verdict.VALID]
    assert manifest.get("provenance", {}).get("signatures") is None  # input not mutated


def test_several_signers_and_resigning_replaces_own(
    manifest: dict[str, Any], key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    signed = sign_manifest(sign_manifest(manifest, key), other_key)
    signed = sign_manifest(signed, key)
    assert len(signed["provenance"]["signatures"]) == 2
    checks = verify_manifest(signed, ring(key, other_key))
    assert {c.key_id for c in checks if c.ok} == {public_key_of(key).key_id, public_key_of(other_key).key_id}


def test_signature_over_a_different_manifest_is_bad(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    signed = sign_manifest(manifest, key)
    tampered = copy.deepcopy(signed)
    tampered["shards"][0]["sha256"] = "sha256:" + "0" * 64
    checks = verify_manifest(tampered, ring(key))
    assert checks[0].verdict is Verdict.BAD_SIGNATURE
    with pytest.raises(BadSignature) as err:
        raise_for_bad_signatures(checks)
    assert err.value.key_id == public_key_of(key).key_id
    assert public_key_of(key).key_id in err.value.message
    assert err.value.http_status == 422


def test_unknown_key_is_its_own_verdict_not_an_error(
    manifest: dict[str, Any], key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    checks = verify_manifest(sign_manifest(manifest, key), ring(other_key))
    assert [c.verdict for c in checks] == [Verdict.UNKNOWN_KEY]
    raise_for_bad_signatures(checks)  # stored, just never curated


def test_signature_by_another_key_under_my_key_id_is_bad(
    manifest: dict[str, Any], key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    signed = sign_manifest(manifest, other_key)
    signed["provenance"]["signatures"][0]["key_id"] = public_key_of(key).key_id
    assert verdicts(signed, ring(key)) == [Verdict.BAD_SIGNATURE]


def test_revocation_uses_receipt_time(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    signed = sign_manifest(manifest, key)
    revoked = ring(key, revoked_at=T0)
    assert verdicts(signed, revoked, signing_time=ReceiptTime(T0 - timedelta(seconds=1))) == [Verdict.VALID]
    after = verify_manifest(signed, revoked, signing_time=ReceiptTime(T0 + timedelta(days=1)))
    assert after[0].verdict is Verdict.REVOKED and "revoked at" in after[0].reason
    assert verdicts(signed, revoked, signing_time=ReceiptTime(T0)) == [Verdict.REVOKED]
    # offline there is no trusted signing time: a revoked key's signature never counts
    assert verdicts(signed, revoked, signing_time=NoTrustedTime()) == [Verdict.REVOKED]
    assert verdicts(signed, revoked) == [Verdict.REVOKED]
    with pytest.raises(BadSignature, match="revoked"):
        raise_for_bad_signatures(verify_manifest(signed, revoked))


def test_recorded_receipt_times_per_signature(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    sig = make_signature(manifest, key)
    signed = sign_manifest(manifest, key)
    times = RecordedReceiptTimes({(sig.key_id, sig.signature): T0 - timedelta(days=3)})
    assert verdicts(signed, ring(key, revoked_at=T0), signing_time=times) == [Verdict.VALID]
    assert verdicts(signed, ring(key, revoked_at=T0), signing_time=RecordedReceiptTimes({})) == [
        Verdict.REVOKED
    ]


def test_a_bad_signature_by_a_revoked_key_reads_as_bad(
    manifest: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    signed = sign_manifest(manifest, key)
    signed["model_version"] = "9"
    assert verdicts(signed, ring(key, revoked_at=T0)) == [Verdict.BAD_SIGNATURE]


def test_detached_signatures(
    manifest: dict[str, Any], key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    publisher = sign_manifest(manifest, key)
    reviewer = parse_detached_signature(
        detached_signature_json(make_signature(manifest, other_key)), "r.sig.json"
    )
    assert isinstance(reviewer, ManifestSignature) and reviewer.source == "detached:r.sig.json"
    checks = verify_manifest(publisher, ring(key, other_key), detached=[reviewer])
    assert [c.verdict for c in checks] == [Verdict.VALID, Verdict.VALID]
    assert checks[1].source == "detached:r.sig.json"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"type": "other/v1", "key_id": "x", "signature": "AA=="}',
        b'{"key_id": "x", "signature": "!!"}',
    ],
)
def test_malformed_detached_signatures(data: bytes) -> None:
    got = parse_detached_signature(data)
    assert not isinstance(got, ManifestSignature) and got.verdict is Verdict.MALFORMED


def test_seed_single_signature_string(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    sig = make_signature(manifest, key)
    seeded = copy.deepcopy(manifest)
    seeded["provenance"]["signature"] = f"{sig.key_id}:{base64.b64encode(sig.signature).decode()}"
    checks = verify_manifest(seeded, ring(key))
    assert [(c.verdict, c.source) for c in checks] == [(Verdict.VALID, "provenance.signature")]
    seeded["provenance"]["signature"] = "..."  # the seed's placeholder
    assert verdicts(seeded, ring(key)) == [Verdict.MALFORMED]


@pytest.mark.parametrize(
    "entry",
    [
        "string",
        {"signature": "AA=="},
        {"key_id": "ed25519:x", "algorithm": "rsa", "signature": "AA=="},
        {"key_id": "ed25519:x", "signature": base64.b64encode(b"x" * 63).decode()},
    ],
)
def test_malformed_entries_get_a_verdict(
    manifest: dict[str, Any], key: Ed25519PrivateKey, entry: object
) -> None:
    m = copy.deepcopy(manifest)
    m["provenance"]["signatures"] = [entry]
    assert verdicts(m, ring(key)) == [Verdict.MALFORMED]
    with pytest.raises(BadSignature):
        raise_for_bad_signatures(verify_manifest(m, ring(key)))


def test_signatures_field_of_wrong_shape(manifest: dict[str, Any]) -> None:
    m = copy.deepcopy(manifest)
    m["provenance"]["signatures"] = "abc"
    with pytest.raises(ManifestSignatureError):
        verify_manifest(m, {})
    m["provenance"] = "x"
    with pytest.raises(ManifestSignatureError):
        signing_payload(m)


def test_fresh_key_signatures_differ_per_key(manifest: dict[str, Any]) -> None:
    a, b = generate_private_key(), generate_private_key()
    assert make_signature(manifest, a).signature != make_signature(manifest, b).signature


def test_signing_drops_the_seed_placeholder_signature(
    manifest: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    seeded = copy.deepcopy(manifest)
    seeded["provenance"]["signature"] = "..."
    signed = sign_manifest(seeded, key)
    assert "signature" not in signed["provenance"]
    assert verdicts(signed, ring(key)) == [Verdict.VALID]
    assert signing_payload(signed) == signing_payload(seeded)
