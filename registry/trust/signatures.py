"""Ed25519 signatures over ModelPack manifests, embedded in ``provenance`` or detached, and their verdicts.

What is signed: the RFC 8785 (JCS) bytes of the manifest with the signature fields removed, i.e.
``provenance.signatures`` and the seed's ``provenance.signature``; a ``provenance`` object left empty
by that removal is dropped too, so signing an unsigned manifest and stripping it again gives the
same bytes. A pack can carry several signatures (publisher, reviewer), each
``{"key_id", "algorithm": "ed25519", "signature": base64}``, in ``provenance.signatures`` or in
detached files of the same shape. The seed's single ``provenance.signature`` string is read as
``"<key_id>:<base64 signature>"`` (e.g. ``ed25519:<hex>:<base64>``); we never write it.

Revocation needs a signing time nobody can backdate. A signer's own timestamp is not one (a thief
with the key writes any date), so verification takes a ``SigningTimeSource``: the registry passes the
time it first received the signature (``ReceiptTime``); offline verification has no trusted time
(``NoTrustedTime``) and so treats every signature by a revoked key as revoked.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.trust.errors import BadSignature, ManifestSignatureError
from registry.trust.keys import ALGORITHM, KEY_ID_PREFIX, PublicKey, public_key_of
from registry.trust.keys import write_atomically as _write_atomically

DETACHED_TYPE = "modelpack.manifest-signature/v1"
SIGNATURE_MAX_B64 = 256


class Verdict(StrEnum):
    VALID = "valid"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    REVOKED = "revoked"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class ManifestSignature:
    """One signature over a manifest's signing payload."""

    key_id: str
    signature: bytes
    algorithm: str = ALGORITHM
    source: str = "provenance"  # provenance | provenance.signature | detached:<name> | dsse

    def to_json(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }


@dataclass(frozen=True)
class KnownKey:
    """A public key the verifier knows, and when (if ever) it was revoked."""

    public_key: PublicKey
    revoked_at: datetime | None = None


KeyRing = Mapping[str, KnownKey]


def keyring_of(keys: Iterable[KnownKey]) -> dict[str, KnownKey]:
    return {k.public_key.key_id: k for k in keys}


class SigningTimeSource(Protocol):
    """Says when a signature was made, as far as the verifier can vouch for it (None: unknown)."""

    def signing_time(self, sig: ManifestSignature) -> datetime | None: ...


@dataclass(frozen=True)
class ReceiptTime:
    """The registry's receipt time: every signature given is treated as made no later than ``at``."""

    at: datetime

    def signing_time(self, sig: ManifestSignature) -> datetime | None:
        return self.at


@dataclass(frozen=True)
class RecordedReceiptTimes:
    """Receipt times the registry recorded per (key id, signature bytes) when it first saw them."""

    times: Mapping[tuple[str, bytes], datetime]

    def signing_time(self, sig: ManifestSignature) -> datetime | None:
        return self.times.get((sig.key_id, sig.signature))


class NoTrustedTime:
    """Offline: no time anyone can vouch for, so a revoked key's signatures never count."""

    def signing_time(self, sig: ManifestSignature) -> datetime | None:
        return None


@dataclass(frozen=True)
class SignatureCheck:
    key_id: str
    verdict: Verdict
    reason: str
    source: str

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.VALID


def _provenance(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    prov = manifest.get("provenance")
    if prov is None:
        return None
    if not isinstance(prov, dict):
        raise ManifestSignatureError("manifest provenance must be a JSON object")
    return prov


def strip_signatures(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest without ``provenance.signatures`` / ``provenance.signature`` (and no empty provenance)."""
    out = copy.deepcopy(dict(manifest))
    prov = _provenance(out)
    if prov is not None:
        prov.pop("signatures", None)
        prov.pop("signature", None)
        if not prov:
            del out["provenance"]
    return out


def signing_payload(manifest: Mapping[str, Any]) -> bytes:
    """The exact bytes every manifest signature covers (RFC 8785 of the stripped manifest)."""
    return rfc8785.dumps(strip_signatures(manifest))


def make_signature(manifest: Mapping[str, Any], private_key: Ed25519PrivateKey) -> ManifestSignature:
    sig = private_key.sign(signing_payload(manifest))
    return ManifestSignature(key_id=public_key_of(private_key).key_id, signature=sig)


def sign_manifest(manifest: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``manifest`` with this key's signature in ``provenance.signatures`` (replacing its own)."""
    sig = make_signature(manifest, private_key)
    out = copy.deepcopy(dict(manifest))
    prov = _provenance(out)
    if prov is None:
        prov = out["provenance"] = {}
    existing = prov.get("signatures", [])
    if not isinstance(existing, list):
        raise ManifestSignatureError("provenance.signatures must be a list")
    kept = [e for e in existing if not (isinstance(e, dict) and e.get("key_id") == sig.key_id)]
    prov["signatures"] = [*kept, sig.to_json()]
    single = prov.get("signature")
    if single is not None and not _is_single_signature(single):
        # The seed's placeholder ("...") is no signature; it is outside the signed bytes anyway,
        # and left in place it would make every verification report a malformed signature.
        del prov["signature"]
    return out


def _is_single_signature(value: object) -> bool:
    return isinstance(value, str) and value.startswith(KEY_ID_PREFIX) and value.count(":") == 2


def _decode_sig(text: object) -> bytes | None:
    if not isinstance(text, str) or len(text) > SIGNATURE_MAX_B64:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


KEY_ID_MAX = 128  # signing_keys.key_id and signatures.key_id (registry.db.models.NAME_LEN)


def _entry(entry: object, source: str) -> ManifestSignature | SignatureCheck:
    if not isinstance(entry, dict):
        return SignatureCheck("", Verdict.MALFORMED, "a signature entry must be a JSON object", source)
    key_id = entry.get("key_id")
    if not isinstance(key_id, str) or not key_id:
        return SignatureCheck("", Verdict.MALFORMED, "a signature entry has no key_id", source)
    if len(key_id) > KEY_ID_MAX:  # the index stores key ids of up to this length
        return SignatureCheck(
            key_id[:64] + "…", Verdict.MALFORMED, f"the key_id is longer than {KEY_ID_MAX} characters", source
        )
    if entry.get("algorithm", ALGORITHM) != ALGORITHM:
        return SignatureCheck(
            key_id, Verdict.MALFORMED, f"unsupported algorithm {entry.get('algorithm')!r}", source
        )
    sig = _decode_sig(entry.get("signature"))
    if sig is None or len(sig) != 64:
        return SignatureCheck(key_id, Verdict.MALFORMED, "signature is not 64 bytes of base64", source)
    return ManifestSignature(key_id=key_id, signature=sig, source=source)


def embedded_signatures(manifest: Mapping[str, Any]) -> list[ManifestSignature | SignatureCheck]:
    """Signatures in ``provenance`` (or a MALFORMED check for each entry that cannot be read)."""
    prov = _provenance(manifest) or {}
    out: list[ManifestSignature | SignatureCheck] = []
    entries = prov.get("signatures", [])
    if not isinstance(entries, list):
        raise ManifestSignatureError("provenance.signatures must be a list of signature objects")
    out.extend(_entry(e, "provenance") for e in entries)
    single = prov.get("signature")
    if single is not None:
        src = "provenance.signature"
        if _is_single_signature(single):
            assert isinstance(single, str)
            prefix, hexid, b64 = single.split(":")
            out.append(_entry({"key_id": f"{prefix}:{hexid}", "signature": b64}, src))
        else:
            out.append(
                SignatureCheck("", Verdict.MALFORMED, "provenance.signature is not '<key_id>:<base64>'", src)
            )
    return out


def detached_signature_json(sig: ManifestSignature) -> bytes:
    return (json.dumps({"type": DETACHED_TYPE, **sig.to_json()}, indent=2) + "\n").encode()


def write_detached_signature(path: Path, sig: ManifestSignature) -> None:
    _write_atomically(Path(path), detached_signature_json(sig), 0o644)


def parse_detached_signature(data: bytes, name: str = "detached") -> ManifestSignature | SignatureCheck:
    source = f"detached:{name}"
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return SignatureCheck("", Verdict.MALFORMED, "detached signature is not JSON", source)
    if isinstance(obj, dict) and obj.get("type", DETACHED_TYPE) != DETACHED_TYPE:
        return SignatureCheck("", Verdict.MALFORMED, f"unknown detached type {obj.get('type')!r}", source)
    return _entry(obj, source)


def check_signature(
    payload: bytes, sig: ManifestSignature, keys: KeyRing, signing_time: SigningTimeSource
) -> SignatureCheck:
    """The verdict for one signature over ``payload``."""
    known = keys.get(sig.key_id)
    if known is None:
        return SignatureCheck(sig.key_id, Verdict.UNKNOWN_KEY, "no such key is known", sig.source)
    if not known.public_key.verify(sig.signature, payload):
        return SignatureCheck(
            sig.key_id, Verdict.BAD_SIGNATURE, "signature does not match this manifest", sig.source
        )
    if known.revoked_at is not None:
        at = signing_time.signing_time(sig)
        if at is None:
            reason = f"key revoked at {known.revoked_at.isoformat()}; no trusted signing time"
            return SignatureCheck(sig.key_id, Verdict.REVOKED, reason, sig.source)
        if at >= known.revoked_at:
            reason = f"key revoked at {known.revoked_at.isoformat()}, signature received {at.isoformat()}"
            return SignatureCheck(sig.key_id, Verdict.REVOKED, reason, sig.source)
    return SignatureCheck(sig.key_id, Verdict.VALID, "valid", sig.source)


def verify_manifest(
    manifest: Mapping[str, Any],
    keys: KeyRing,
    *,
    detached: Iterable[ManifestSignature | SignatureCheck] = (),
    signing_time: SigningTimeSource | None = None,
) -> list[SignatureCheck]:
    """One verdict per signature (embedded, then detached) over ``manifest``'s signing payload."""
    payload = signing_payload(manifest)
    source = signing_time or NoTrustedTime()
    checks: list[SignatureCheck] = []
    for item in [*embedded_signatures(manifest), *detached]:
        if isinstance(item, SignatureCheck):
            checks.append(item)
        else:
            checks.append(check_signature(payload, item, keys, source))
    return checks


def raise_for_bad_signatures(checks: Iterable[SignatureCheck]) -> None:
    """For publish: a signature that is malformed, does not verify or is revoked refuses the pack.

    Unknown keys are not errors (the pack is stored, it just cannot become curated).

    Raises:
        BadSignature: naming the first offending key.
    """
    for c in checks:
        if c.verdict in (Verdict.BAD_SIGNATURE, Verdict.REVOKED, Verdict.MALFORMED):
            raise BadSignature(
                f"signature by key {c.key_id or '(none)'} ({c.source}) is {c.verdict.value}: {c.reason}",
                key_id=c.key_id,
                verdict=c.verdict.value,
            )
