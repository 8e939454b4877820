"""IPNS records per the IPNS Record specification: build, validate, and the sequence rule.

A record is an ``IpnsEntry`` protobuf whose ``data`` field is DAG-CBOR
``{Value, Validity, ValidityType, Sequence, TTL}`` signed (V2) as ``b"ipns-signature:" + data``.
We also write the V1 fields and V1 signature (``value + validity + b"EOL"``) so older peers can read
our records, but validation only trusts V2: a V1-only record is refused, a broken V1 signature is
ignored, and V1 fields that disagree with the signed data are refused. Records over 10 KiB are
refused before any parsing. Validity is RFC 3339 in UTC with up to nanosecond precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dag_cbor
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.ipns.name import libp2p_public_key_bytes, parse_ipns_name
from registry.ipns.protobuf import LEN, VARINT, WireError, decode_fields, field_bytes, field_varint
from registry.trust.errors import (
    IpnsBadSignature,
    IpnsDataMismatch,
    IpnsExpired,
    IpnsMalformed,
    IpnsRecordTooLarge,
    IpnsSequenceNotNewer,
    IpnsV1Only,
)
from registry.trust.keys import PublicKey, public_key_of

MAX_RECORD_BYTES = 10 * 1024
V2_PREFIX = b"ipns-signature:"
VALIDITY_EOL = 0
# A withdrawn channel's record: its Value is this well-known path (a raw block inlined in an identity CID,
# so any IPFS node resolves it to the text without a fetch), and its signed data carries the custom field
# ``Withdrawn: true`` (IPNS data is extensible); that field with any other Value is malformed.
WITHDRAWN_MARKER = b"modelpack: channel withdrawn\n"
WITHDRAWN_PATH = "/ipfs/bafkqahlnn5sgk3dqmfrwworamnugc3tomvwca53jorugi4tbo5xau"
WITHDRAWN_FIELD = "Withdrawn"

# IpnsEntry field numbers
F_VALUE, F_SIG_V1, F_VALIDITY_TYPE, F_VALIDITY, F_SEQUENCE, F_TTL, F_PUBKEY, F_SIG_V2, F_DATA = range(1, 10)
_WIRE = {
    F_VALUE: LEN,
    F_SIG_V1: LEN,
    F_VALIDITY_TYPE: VARINT,
    F_VALIDITY: LEN,
    F_SEQUENCE: VARINT,
    F_TTL: VARINT,
    F_PUBKEY: LEN,
    F_SIG_V2: LEN,
    F_DATA: LEN,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


@dataclass(frozen=True)
class IpnsRecord:
    """A validated IPNS record."""

    name: str  # canonical k51... form
    value: bytes  # the content path, e.g. b"/ipfs/bafy..."
    sequence: int
    validity: bytes  # as signed: RFC 3339
    validity_ns: int  # EOL in nanoseconds since the Unix epoch
    ttl_ns: int
    public_key: PublicKey
    has_v1_signature: bool
    raw: bytes

    @property
    def path(self) -> str:
        return self.value.decode("utf-8", "replace")

    @property
    def expires_at(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.validity_ns // 1000)

    @property
    def withdrawn(self) -> bool:
        """The registry signed that this channel no longer points at any pack."""
        return self.path == WITHDRAWN_PATH


def _ns_since_epoch(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000


def format_validity(t: datetime) -> bytes:
    """RFC 3339 in UTC with trailing fractional zeros dropped, as Go's RFC3339Nano writes it."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    frac = f".{t.microsecond:06d}".rstrip("0") if t.microsecond else ""
    return (t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z").encode("ascii")


def parse_validity(raw: bytes) -> int:
    """Nanoseconds since the epoch of an RFC 3339 validity.

    Raises:
        IpnsMalformed: not RFC 3339.
    """
    m = _RFC3339.fullmatch(raw)
    if m is None:
        raise IpnsMalformed(f"validity {raw[:40]!r} is not an RFC 3339 timestamp")
    year, month, day, hh, mm, ss = (int(g) for g in m.groups()[:6])
    try:
        base = datetime(year, month, day, hh, mm, min(ss, 59), tzinfo=UTC)
    except ValueError:
        raise IpnsMalformed(f"validity {raw[:40]!r} is not a real date") from None
    ns = _ns_since_epoch(base) + (ss - min(ss, 59)) * 10**9
    if m.group(7):
        ns += int(m.group(7).ljust(9, b"0"))
    if m.group(9):
        offset_s = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        ns -= (offset_s if m.group(9) == b"+" else -offset_s) * 10**9
    return ns


def make_record(
    private_key: Ed25519PrivateKey,
    value: str,
    sequence: int,
    validity: datetime,
    ttl_ns: int,
    *,
    v1_compatible: bool = True,
    embed_public_key: bool = False,
    withdrawn: bool = False,
) -> bytes:
    """Build and sign a record pointing at ``value`` (e.g. ``/ipfs/<pack CID>``), valid until ``validity``.

    With ``v1_compatible`` (default) the V1 fields and V1 signature are written too.
    Ed25519 keys are inside their name, so ``pubKey`` is only written when asked.
    ``withdrawn`` signs a withdrawal: ``value`` must be ``WITHDRAWN_PATH``.
    """
    if sequence < 0 or ttl_ns < 0:
        raise ValueError("sequence and ttl_ns must be >= 0")
    if withdrawn != (value == WITHDRAWN_PATH):
        raise ValueError(f"a withdrawal record has the value {WITHDRAWN_PATH}, and only it")
    value_b = value.encode("utf-8")
    validity_b = format_validity(validity)
    fields: dict[str, Any] = {
        "Value": value_b,
        "Validity": validity_b,
        "ValidityType": VALIDITY_EOL,
        "Sequence": sequence,
        "TTL": ttl_ns,
    }
    if withdrawn:
        fields[WITHDRAWN_FIELD] = True
    data = dag_cbor.encode(fields)
    sig_v2 = private_key.sign(V2_PREFIX + data)
    out = bytearray()
    if v1_compatible:
        sig_v1 = private_key.sign(value_b + validity_b + b"EOL")
        out += field_bytes(F_VALUE, value_b) + field_bytes(F_SIG_V1, sig_v1)
        out += field_varint(F_VALIDITY_TYPE, VALIDITY_EOL) + field_bytes(F_VALIDITY, validity_b)
        out += field_varint(F_SEQUENCE, sequence) + field_varint(F_TTL, ttl_ns)
    if embed_public_key:
        out += field_bytes(F_PUBKEY, libp2p_public_key_bytes(public_key_of(private_key)))
    out += field_bytes(F_SIG_V2, sig_v2) + field_bytes(F_DATA, data)
    if len(out) > MAX_RECORD_BYTES:
        raise IpnsRecordTooLarge(
            f"the record would be {len(out)} bytes; the limit is {MAX_RECORD_BYTES}",
            size=len(out),
            limit=MAX_RECORD_BYTES,
        )
    return bytes(out)


def _decode_data(data: bytes) -> dict[str, Any]:
    try:
        decoded = dag_cbor.decode(data)
    except Exception as e:  # dag_cbor raises several error types for bad input
        raise IpnsMalformed(f"the record's data field is not DAG-CBOR: {e}") from None
    if not isinstance(decoded, dict):
        raise IpnsMalformed("the record's data field is not a DAG-CBOR map")
    doc: dict[str, Any] = dict(decoded)
    for key, kind in (("Value", bytes), ("Validity", bytes), ("ValidityType", int), ("Sequence", int)):
        if not isinstance(doc.get(key), kind) or isinstance(doc.get(key), bool):
            raise IpnsMalformed(f"the record's data has no valid {key}")
    ttl = doc.get("TTL", 0)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0 or doc["Sequence"] < 0:
        raise IpnsMalformed("the record's data has a negative Sequence or TTL")
    doc["TTL"] = ttl
    if WITHDRAWN_FIELD in doc and (
        doc[WITHDRAWN_FIELD] is not True or doc["Value"] != WITHDRAWN_PATH.encode()
    ):
        raise IpnsMalformed(
            f"the record's {WITHDRAWN_FIELD} field is set, and its Value is not {WITHDRAWN_PATH}"
        )
    return doc


def _check_v1_fields(fields: dict[int, int | bytes], doc: dict[str, Any]) -> None:
    """With a V1 signature, every V1 field must equal the signed data (a missing one reads as its
    protobuf default, as the reference implementation reads it); without one, any V1 field given
    must still agree, so no reader can be shown a value the signature does not cover."""
    has_v1_signature = bool(fields.get(F_SIG_V1))
    pairs = (
        (F_VALUE, "Value", "value", b""),
        (F_VALIDITY, "Validity", "validity", b""),
        (F_VALIDITY_TYPE, "ValidityType", "validityType", 0),
        (F_SEQUENCE, "Sequence", "sequence", 0),
        (F_TTL, "TTL", "ttl", 0),
    )
    for number, key, label, default in pairs:
        if number not in fields and not has_v1_signature:
            continue
        if fields.get(number, default) != doc[key]:
            raise IpnsDataMismatch(
                f"the record's V1 {label} disagrees with its signed DAG-CBOR data", field=label
            )


def validate_record(
    name: str, record: bytes, now: datetime, *, max_bytes: int = MAX_RECORD_BYTES
) -> IpnsRecord:
    """Validate ``record`` for ``name`` at time ``now``; returns what it says.

    Raises:
        IpnsRecordTooLarge, IpnsMalformed, IpnsV1Only, IpnsKeyMismatch, IpnsUnsupportedKey,
        IpnsBadSignature, IpnsDataMismatch, IpnsExpired (all ``IpnsRecordError``), or InvalidIpnsName.
    """
    if len(record) > max_bytes:
        raise IpnsRecordTooLarge(
            f"IPNS record is {len(record)} bytes; the limit is {max_bytes}", size=len(record), limit=max_bytes
        )
    parsed_name = parse_ipns_name(name)
    try:
        fields = decode_fields(record, _WIRE)
    except WireError as e:
        raise IpnsMalformed(f"the IPNS record is not an IpnsEntry protobuf: {e}") from None
    sig_v2, data = fields.get(F_SIG_V2), fields.get(F_DATA)
    if not sig_v2 or not data:
        raise IpnsV1Only(
            "the IPNS record has no V2 signature and data; V1-only records are no longer accepted"
        )
    assert isinstance(sig_v2, bytes) and isinstance(data, bytes)
    doc = _decode_data(data)
    embedded = fields.get(F_PUBKEY)
    key = parsed_name.public_key(embedded if isinstance(embedded, bytes) and embedded else None)
    if not key.verify(sig_v2, V2_PREFIX + data):
        raise IpnsBadSignature("the IPNS record's V2 signature does not verify with the name's key")
    _check_v1_fields(fields, doc)
    if doc["ValidityType"] != VALIDITY_EOL:
        raise IpnsMalformed(f"validity type {doc['ValidityType']} is not supported (only 0, EOL)")
    validity_ns = parse_validity(doc["Validity"])
    if _ns_since_epoch(now) >= validity_ns:
        raise IpnsExpired(
            f"the IPNS record expired at {doc['Validity'].decode('ascii', 'replace')}",
            validity=doc["Validity"].decode("ascii", "replace"),
        )
    return IpnsRecord(
        name=parsed_name.canonical,
        value=doc["Value"],
        sequence=doc["Sequence"],
        validity=doc["Validity"],
        validity_ns=validity_ns,
        ttl_ns=doc["TTL"],
        public_key=key,
        has_v1_signature=bool(fields.get(F_SIG_V1)),
        raw=record,
    )


def check_sequence(new: int | IpnsRecord, seen: int | IpnsRecord | None) -> None:
    """Refuse a record whose sequence is not strictly higher than the highest one seen for its name.

    Raises:
        IpnsSequenceNotNewer: ``new <= seen``.
    """
    new_seq = new.sequence if isinstance(new, IpnsRecord) else new
    if seen is None:
        return
    seen_seq = seen.sequence if isinstance(seen, IpnsRecord) else seen
    if new_seq <= seen_seq:
        raise IpnsSequenceNotNewer(
            f"IPNS record sequence {new_seq} is not higher than {seen_seq}, already seen",
            sequence=new_seq,
            seen=seen_seq,
        )
