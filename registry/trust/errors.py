"""Errors of the trust primitives (keys, manifest signatures, DSSE, IPNS records, trust policy).

``TrustError`` is the root; it subclasses ``RegistryError`` so the API middleware maps every one of
them to a JSON error with a stable ``code``. Each subclass's docstring is its default message and
its typed fields name the offending value.
"""

from __future__ import annotations

from typing import Any, ClassVar

from registry.errors import RegistryError


class TrustError(RegistryError):
    """A signature, key, record or trust policy was refused."""

    code: ClassVar[str] = "trust_error"
    http_status: ClassVar[int] = 400


# --- keys -----------------------------------------------------------------------------------------


class KeyFileError(TrustError):
    """The key file cannot be read or is not an Ed25519 key."""

    code = "bad_key_file"

    def __init__(self, message: str | None = None, *, path: str = "", **details: Any) -> None:
        self.path = path
        super().__init__(message, path=path, **details)


class BadPublicKey(TrustError):
    """The public key is not a 32-byte Ed25519 key in PEM or base64."""

    code = "bad_public_key"


class KeyProofInvalid(TrustError):
    """Registering a key needs its signature over a registry challenge (proof of possession)."""

    code = "key_proof_invalid"


class KeySealError(TrustError):
    """A sealed private key cannot be opened: wrong key-encryption key or tampered bytes."""

    code = "key_unseal_failed"
    http_status = 500


# --- manifest signatures and DSSE ------------------------------------------------------------------


class ManifestSignatureError(TrustError):
    """The manifest's signature fields are malformed."""

    code = "bad_signature_field"
    http_status = 422


class BadSignature(TrustError):
    """A signature does not verify against its key."""

    code = "bad_signature"
    http_status = 422

    def __init__(self, message: str | None = None, *, key_id: str = "", **details: Any) -> None:
        self.key_id = key_id
        super().__init__(message, key_id=key_id, **details)


class DsseError(TrustError):
    """The DSSE envelope or its in-toto statement is malformed."""

    code = "bad_dsse_envelope"
    http_status = 422


class WrongPayloadType(DsseError):
    """The DSSE envelope carries a payload type other than in-toto."""

    code = "wrong_dsse_payload_type"

    def __init__(self, message: str | None = None, *, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(message, expected=expected, got=got)


class PolicyError(TrustError):
    """The trust policy is malformed."""

    code = "bad_trust_policy"


# --- IPNS -------------------------------------------------------------------------------------------


class InvalidIpnsName(TrustError):
    """The IPNS name is not a libp2p-key CID (k51...) or peer ID."""

    code = "bad_ipns_name"

    def __init__(self, message: str | None = None, *, name: str = "") -> None:
        self.name = name
        super().__init__(message, name=name)


class IpnsRecordError(TrustError):
    """The IPNS record is invalid."""

    code = "invalid_ipns_record"
    reason: ClassVar[str] = "invalid"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message, reason=self.reason, **details)


class IpnsRecordTooLarge(IpnsRecordError):
    """The IPNS record is larger than 10 KiB; it was not parsed."""

    code = "ipns_record_too_large"
    http_status = 413
    reason = "too_large"

    def __init__(self, message: str | None = None, *, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message, size=size, limit=limit)


class IpnsMalformed(IpnsRecordError):
    """The IPNS record is not a well-formed IpnsEntry protobuf with DAG-CBOR data."""

    reason = "malformed"


class IpnsV1Only(IpnsRecordError):
    """The IPNS record has no V2 signature or no data field; V1-only records are no longer accepted."""

    reason = "v1_only"


class IpnsBadSignature(IpnsRecordError):
    """The IPNS record's V2 signature does not verify with the name's key."""

    reason = "bad_signature_v2"


class IpnsDataMismatch(IpnsRecordError):
    """The IPNS record's V1 fields disagree with its signed DAG-CBOR data."""

    reason = "data_mismatch"

    def __init__(self, message: str | None = None, *, field: str) -> None:
        self.field = field
        super().__init__(message, field=field)


class IpnsExpired(IpnsRecordError):
    """The IPNS record's validity (EOL) has passed."""

    reason = "expired"

    def __init__(self, message: str | None = None, *, validity: str) -> None:
        self.validity = validity
        super().__init__(message, validity=validity)


class IpnsKeyMismatch(IpnsRecordError):
    """The public key in the IPNS record does not belong to the IPNS name."""

    reason = "key_mismatch"


class IpnsUnsupportedKey(IpnsRecordError):
    """The IPNS record is signed with a key type other than Ed25519."""

    reason = "unsupported_key_type"


class IpnsSequenceNotNewer(IpnsRecordError):
    """The IPNS record's sequence is not higher than one already seen."""

    code = "ipns_sequence_not_newer"
    http_status = 409
    reason = "sequence_not_newer"

    def __init__(self, message: str | None = None, *, sequence: int, seen: int) -> None:
        self.sequence = sequence
        self.seen = seen
        super().__init__(message, sequence=sequence, seen=seen)
