"""in-toto statements in DSSE envelopes: PAE, subjects, signatures, and refusals."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.trust.dsse import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    make_envelope,
    pae,
    parse_envelope,
    statement_for,
    verify_envelope,
)
from registry.trust.errors import DsseError, WrongPayloadType
from registry.trust.keys import public_key_of
from registry.trust.signatures import KnownKey, NoTrustedTime, Verdict, keyring_of


def ring(*keys: Ed25519PrivateKey) -> dict[str, KnownKey]:
    return keyring_of(KnownKey(public_key_of(k)) for k in keys)


def env_bytes(env: dict[str, Any]) -> bytes:
    return json.dumps(env).encode()


def test_pae_matches_the_dsse_spec_example() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_statement_subjects_are_shards_with_sha256(manifest: dict[str, Any]) -> None:
    stmt = statement_for(manifest)
    assert stmt["_type"] == STATEMENT_TYPE and stmt["predicateType"] == PREDICATE_TYPE
    assert stmt["subject"] == [
        {"name": s["filename"], "digest": {"sha256": s["sha256"].removeprefix("sha256:")}}
        for s in manifest["shards"]
    ]


def test_envelope_round_trip(
    manifest: dict[str, Any], key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    env = make_envelope(manifest, [key, other_key])
    assert env["payloadType"] == PAYLOAD_TYPE
    result = verify_envelope(env_bytes(env), manifest, ring(key, other_key), NoTrustedTime())
    assert [c.verdict for c in result.signatures] == [Verdict.VALID, Verdict.VALID]
    assert result.mismatches == []


def test_wrong_payload_type_is_refused_with_the_reason(
    manifest: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    env = make_envelope(manifest, [key])
    env["payloadType"] = "application/json"
    with pytest.raises(WrongPayloadType) as err:
        verify_envelope(env_bytes(env), manifest, ring(key), NoTrustedTime())
    assert err.value.got == "application/json" and err.value.expected == PAYLOAD_TYPE
    assert "application/json" in err.value.message and "in-toto" in err.value.message


def test_statement_for_another_manifest_is_reported(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    env = make_envelope(manifest, [key])
    changed = copy.deepcopy(manifest)
    changed["shards"][0]["sha256"] = "sha256:" + "1" * 64
    result = verify_envelope(env_bytes(env), changed, ring(key), NoTrustedTime())
    assert result.signatures[0].ok  # the envelope itself is intact...
    assert any("differs" in m for m in result.mismatches)  # ...but not about this manifest


def test_tampered_payload_fails_signature(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    env = make_envelope(manifest, [key])
    stmt = json.loads(base64.b64decode(env["payload"]))
    stmt["subject"][0]["digest"]["sha256"] = "2" * 64
    env["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    result = verify_envelope(env_bytes(env), manifest, ring(key), NoTrustedTime())
    assert result.signatures[0].verdict is Verdict.BAD_SIGNATURE
    assert any("sha256 for shard" in m for m in result.mismatches)


@pytest.mark.parametrize("data", [b"nope", b"[]", json.dumps({"payloadType": PAYLOAD_TYPE}).encode()])
def test_malformed_envelopes(data: bytes) -> None:
    with pytest.raises(DsseError):
        parse_envelope(data)


def test_malformed_signature_entries_get_a_verdict(manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    env = make_envelope(manifest, [key])
    env["signatures"].append({"keyid": "x", "sig": "!!"})
    env["signatures"].append("junk")
    result = verify_envelope(env_bytes(env), manifest, ring(key), NoTrustedTime())
    assert [c.verdict for c in result.signatures] == [Verdict.VALID, Verdict.MALFORMED, Verdict.MALFORMED]


def test_manifest_without_shard_digests_cannot_be_stated(manifest: dict[str, Any]) -> None:
    manifest["shards"][0]["sha256"] = "md5:abc"
    with pytest.raises(DsseError, match="sha256"):
        statement_for(manifest)


def test_foreign_predicate_does_not_bind_the_manifest(
    manifest: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    stmt = statement_for(manifest)
    stmt["predicateType"] = "https://model_signing/signature/v1.0"
    body = json.dumps(stmt).encode()
    env = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [
            {
                "keyid": public_key_of(key).key_id,
                "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, body))).decode(),
            }
        ],
    }
    result = verify_envelope(env_bytes(env), manifest, ring(key), NoTrustedTime())
    assert result.signatures[0].ok
    assert any("does not bind the manifest" in m for m in result.mismatches)


def _with_files(manifest: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    out["files"] = [
        {"filename": "config.json", "cid": manifest["shards"][0]["cid"], "sha256": "sha256:" + "ab" * 32},
        {"filename": "tokenizer.json", "cid": manifest["shards"][1]["cid"], "sha256": "sha256:" + "cd" * 32},
    ]
    return out


def test_statement_subjects_are_the_shards_then_the_files(manifest: dict[str, Any]) -> None:
    m = _with_files(manifest)
    names = [(s["name"], s["digest"]["sha256"]) for s in statement_for(m)["subject"]]
    assert names == [
        *((s["filename"], s["sha256"].removeprefix("sha256:")) for s in manifest["shards"]),
        ("config.json", "ab" * 32),
        ("tokenizer.json", "cd" * 32),
    ]


def test_a_statement_that_leaves_out_or_alters_a_file_does_not_verify(
    manifest: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    m = _with_files(manifest)
    stmt = statement_for(m)
    stmt["subject"] = [s for s in stmt["subject"] if s["name"] != "tokenizer.json"]
    stmt["subject"][-1]["digest"]["sha256"] = "ef" * 32  # config.json
    body = json.dumps(stmt).encode()
    sig = key.sign(pae(PAYLOAD_TYPE, body))
    env = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": next(iter(ring(key))), "sig": base64.b64encode(sig).decode()}],
    }
    result = verify_envelope(env_bytes(env), m, ring(key), NoTrustedTime())
    assert "DSSE statement has no subject for file tokenizer.json" in result.mismatches
    assert "DSSE statement's sha256 for file config.json differs from the manifest" in result.mismatches
    good = verify_envelope(env_bytes(make_envelope(m, [key])), m, ring(key), NoTrustedTime())
    assert good.mismatches == []
