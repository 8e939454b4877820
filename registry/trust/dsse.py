"""in-toto Statement v1 in a DSSE envelope, so tools outside modelpack can verify a pack's shards.

The statement's subjects are the shard filenames with their sha256, then the manifest's other ``files``
(config.json, tokenizer.json...) alike, the shape OpenSSF model-signing uses; its predicate (type ``PREDICATE_TYPE``) names the manifest's signing payload by sha256 so the
envelope is tied to exactly one manifest. Signatures are Ed25519 over DSSE's PAE:
``"DSSEv1" SP len(type) SP type SP len(body) SP body``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from model_core.format.digest import Sha256Digest
from registry.trust.errors import DsseError, WrongPayloadType
from registry.trust.keys import public_key_of
from registry.trust.signatures import (
    KeyRing,
    ManifestSignature,
    SignatureCheck,
    SigningTimeSource,
    Verdict,
    check_signature,
    signing_payload,
)

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://modelpack.dev/model-signing/v1"
ENVELOPE_MAX_BYTES = 4 * 1024 * 1024


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _shard_digest(shard: Mapping[str, Any], what: str = "shard") -> str:
    try:
        return Sha256Digest.parse(shard.get("sha256")).hex
    except ValueError:
        raise DsseError(
            f"{what} {shard.get('filename')!r} has no sha256 in the form sha256:<64 hex>"
        ) from None


def statement_for(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The in-toto Statement v1 for a manifest: one subject per shard, then one per other file."""
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise DsseError("the manifest has no shards to put in the statement")
    files = manifest.get("files")
    entries = [(s, "shard") for s in shards] + [
        (f, "file") for f in (files if isinstance(files, list) else ())
    ]
    subjects = [
        {"name": str(s.get("filename")), "digest": {"sha256": _shard_digest(s, what)}}
        for s, what in entries
        if isinstance(s, dict)
    ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "model_name": manifest.get("model_name"),
            "model_version": manifest.get("model_version"),
            "manifest": {
                "canonicalization": "RFC8785, signature fields removed",
                "sha256": hashlib.sha256(signing_payload(manifest)).hexdigest(),
            },
            "serialization": {"method": "files", "hash_type": "sha256"},
        },
    }


def make_envelope(manifest: Mapping[str, Any], private_keys: list[Ed25519PrivateKey]) -> dict[str, Any]:
    """A DSSE envelope over the manifest's statement, signed by each key."""
    body = json.dumps(statement_for(manifest), sort_keys=True, separators=(",", ":")).encode()
    to_sign = pae(PAYLOAD_TYPE, body)
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [
            {"keyid": public_key_of(k).key_id, "sig": base64.b64encode(k.sign(to_sign)).decode("ascii")}
            for k in private_keys
        ],
    }


@dataclass(frozen=True)
class EnvelopeCheck:
    """Signature verdicts for a DSSE envelope plus whether its statement matches the manifest."""

    signatures: list[SignatureCheck]
    mismatches: list[str]


def parse_envelope(data: bytes) -> dict[str, Any]:
    """Parse and shape-check a DSSE envelope; refuses a wrong payload type with the reason.

    Raises:
        WrongPayloadType: payloadType is not ``application/vnd.in-toto+json``.
        DsseError: anything else malformed.
    """
    if len(data) > ENVELOPE_MAX_BYTES:
        raise DsseError(f"DSSE envelope is {len(data)} bytes; the limit is {ENVELOPE_MAX_BYTES}")
    try:
        env = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise DsseError("DSSE envelope is not JSON") from None
    if not isinstance(env, dict):
        raise DsseError("DSSE envelope must be a JSON object")
    ptype = env.get("payloadType")
    if ptype != PAYLOAD_TYPE:
        raise WrongPayloadType(
            f"DSSE payloadType is {ptype!r}; only {PAYLOAD_TYPE!r} (an in-toto statement) is accepted",
            expected=PAYLOAD_TYPE,
            got=str(ptype),
        )
    if not isinstance(env.get("payload"), str) or not isinstance(env.get("signatures"), list):
        raise DsseError("DSSE envelope needs a base64 'payload' and a 'signatures' list")
    return env


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise DsseError(f"DSSE {what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DsseError(f"DSSE {what} is not valid base64") from None


def verify_envelope(
    data: bytes, manifest: Mapping[str, Any], keys: KeyRing, signing_time: SigningTimeSource
) -> EnvelopeCheck:
    """Verdict per envelope signature, and the ways its statement disagrees with ``manifest``."""
    env = parse_envelope(data)
    body = _b64(env["payload"], "payload")
    to_verify = pae(PAYLOAD_TYPE, body)
    checks: list[SignatureCheck] = []
    for entry in env["signatures"]:
        keyid = entry.get("keyid") if isinstance(entry, dict) else None
        sig = None
        if isinstance(entry, dict):
            try:
                sig = _b64(entry.get("sig"), "signature")
            except DsseError:
                sig = None
        if (
            not isinstance(keyid, str) or len(keyid) > 128 or sig is None or len(sig) != 64
        ):  # 128: the key_id column
            checks.append(
                SignatureCheck(str(keyid or "")[:128], Verdict.MALFORMED, "bad DSSE signature", "dsse")
            )
            continue
        ms = ManifestSignature(key_id=keyid, signature=sig, source="dsse")
        checks.append(check_signature(to_verify, ms, keys, signing_time))
    return EnvelopeCheck(signatures=checks, mismatches=_statement_mismatches(body, manifest))


def _kind(manifest: Mapping[str, Any], name: str) -> str:
    files = manifest.get("files")
    named = {f.get("filename") for f in files if isinstance(f, dict)} if isinstance(files, list) else set()
    return "file" if name in named else "shard"


def _statement_mismatches(body: bytes, manifest: Mapping[str, Any]) -> list[str]:
    try:
        stmt = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ["DSSE payload is not a JSON in-toto statement"]
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        return [f"DSSE payload is not an in-toto Statement v1 ({STATEMENT_TYPE})"]
    problems: list[str] = []
    try:
        expected = {s["name"]: s["digest"]["sha256"] for s in statement_for(manifest)["subject"]}
    except DsseError as e:
        return [e.message]
    subjects = stmt.get("subject")
    got: dict[str, str] = {}
    if isinstance(subjects, list):
        for s in subjects:
            if isinstance(s, dict) and isinstance(s.get("digest"), dict):
                got[str(s.get("name"))] = str(s["digest"].get("sha256"))
    for name, digest in expected.items():
        if name not in got:
            problems.append(f"DSSE statement has no subject for {_kind(manifest, name)} {name}")
        elif got[name] != digest:
            problems.append(
                f"DSSE statement's sha256 for {_kind(manifest, name)} {name} differs from the manifest"
            )
    problems.extend(
        f"DSSE statement names {n}, which is not a shard or file of the manifest"
        for n in got
        if n not in expected
    )
    pred = stmt.get("predicate")
    if stmt.get("predicateType") != PREDICATE_TYPE or not isinstance(pred, dict):
        # Another tool's statement covers shard bytes only, not config/license/provenance: it must
        # not count as a signature over this manifest.
        problems.append(
            f"DSSE predicateType {stmt.get('predicateType')!r} does not bind the manifest "
            f"(expected {PREDICATE_TYPE})"
        )
        return problems
    want = hashlib.sha256(signing_payload(manifest)).hexdigest()
    manifest_ref = pred.get("manifest")
    if not isinstance(manifest_ref, dict) or manifest_ref.get("sha256") != want:
        problems.append("DSSE statement is over a different manifest (manifest sha256 differs)")
    return problems
