"""IPNS records: building, validating, every refusal with its reason, names and the sequence rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dag_cbor
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import multibase

from registry.ipns.name import ipns_name, libp2p_public_key_bytes, parse_ipns_name
from registry.ipns.protobuf import decode_fields, field_bytes, field_varint
from registry.ipns.record import (
    MAX_RECORD_BYTES,
    check_sequence,
    format_validity,
    make_record,
    parse_validity,
    validate_record,
)
from registry.trust.errors import (
    InvalidIpnsName,
    IpnsBadSignature,
    IpnsDataMismatch,
    IpnsExpired,
    IpnsKeyMismatch,
    IpnsMalformed,
    IpnsRecordError,
    IpnsRecordTooLarge,
    IpnsSequenceNotNewer,
    IpnsV1Only,
)
from registry.trust.keys import generate_private_key, public_key_of

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=48)
VALUE = "/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
HOUR_NS = 3600 * 10**9


def name_of(key: Ed25519PrivateKey) -> str:
    return ipns_name(public_key_of(key))


def rebuild(record: bytes, **replace: int | bytes) -> bytes:
    """Re-encode a record's fields, replacing some (field name -> value)."""
    from registry.ipns import record as ipns

    wire = dict(ipns._WIRE)
    fields = decode_fields(record, wire)
    numbers = {
        "value": 1,
        "sig_v1": 2,
        "validity_type": 3,
        "validity": 4,
        "sequence": 5,
        "ttl": 6,
        "pubkey": 7,
        "sig_v2": 8,
        "data": 9,
    }
    for k, v in replace.items():
        fields[numbers[k]] = v
    out = b""
    for n in sorted(fields):
        v = fields[n]
        out += field_varint(n, v) if isinstance(v, int) else field_bytes(n, v)
    return out


def test_name_is_k51_base36_libp2p_key(key: Ed25519PrivateKey) -> None:
    name = name_of(key)
    assert name.startswith("k51")
    parsed = parse_ipns_name(name)
    assert parsed.hash_code == 0 and parsed.digest == libp2p_public_key_bytes(public_key_of(key))
    assert parsed.public_key(None) == public_key_of(key)
    peer_id = multibase.get("base58btc").encode(bytes([0, 36]) + parsed.digest)[1:]
    assert peer_id.startswith("12D3KooW")
    assert parse_ipns_name(peer_id).canonical == name == parse_ipns_name("/ipns/" + name).canonical


@pytest.mark.parametrize(
    "bad", ["", "k51", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "x" * 300, "QmNope!"]
)
def test_bad_names(bad: str) -> None:
    with pytest.raises(InvalidIpnsName):
        parse_ipns_name(bad)


def test_round_trip_v1_v2(key: Ed25519PrivateKey) -> None:
    record = make_record(key, VALUE, 7, LATER, HOUR_NS)
    got = validate_record(name_of(key), record, NOW)
    assert (got.path, got.sequence, got.ttl_ns, got.has_v1_signature) == (VALUE, 7, HOUR_NS, True)
    assert got.expires_at == LATER and got.public_key == public_key_of(key)
    assert len(record) < 1024


def test_round_trip_v2_only_with_embedded_key(key: Ed25519PrivateKey) -> None:
    record = make_record(key, VALUE, 1, LATER, HOUR_NS, v1_compatible=False, embed_public_key=True)
    got = validate_record(name_of(key), record, NOW)
    assert not got.has_v1_signature and got.sequence == 1


@settings(max_examples=40, deadline=None)
@given(
    value=st.text(min_size=1, max_size=200),
    sequence=st.integers(0, 2**64 - 1),
    ttl=st.integers(0, 2**63),
    micros=st.integers(0, 10**6 - 1),
)
def test_round_trip_property(value: str, sequence: int, ttl: int, micros: int) -> None:
    key = generate_private_key()
    eol = LATER.replace(microsecond=micros)
    got = validate_record(name_of(key), make_record(key, value, sequence, eol, ttl), NOW)
    assert (got.value, got.sequence, got.ttl_ns, got.expires_at) == (value.encode(), sequence, ttl, eol)


def test_too_large_is_refused_before_parsing(key: Ed25519PrivateKey) -> None:
    garbage = b"\xff" * (MAX_RECORD_BYTES + 1)  # would be IpnsMalformed if it were parsed
    with pytest.raises(IpnsRecordTooLarge) as err:
        validate_record(name_of(key), garbage, NOW)
    assert err.value.size == MAX_RECORD_BYTES + 1 and err.value.http_status == 413
    big_value = make_record(key, "/ipfs/" + "a" * 9000, 1, LATER, HOUR_NS, v1_compatible=False)
    validate_record(name_of(key), big_value, NOW)  # under the limit: fine
    with pytest.raises(IpnsRecordTooLarge):
        validate_record(name_of(key), big_value, NOW, max_bytes=1024)


@pytest.mark.parametrize(
    "junk", [b"\x0a\xff", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0f", b"\x42\x05ab"]
)
def test_malformed_protobuf(key: Ed25519PrivateKey, junk: bytes) -> None:
    with pytest.raises(IpnsMalformed):
        validate_record(name_of(key), junk, NOW)


def test_duplicate_field_is_malformed(key: Ed25519PrivateKey) -> None:
    record = make_record(key, VALUE, 1, LATER, HOUR_NS)
    with pytest.raises(IpnsMalformed, match="twice"):
        validate_record(name_of(key), record + field_bytes(1, b"/ipfs/other"), NOW)


def test_wrong_wire_type_is_malformed(key: Ed25519PrivateKey) -> None:
    record = make_record(key, VALUE, 1, LATER, HOUR_NS, v1_compatible=False)
    with pytest.raises(IpnsMalformed, match="wire type"):
        validate_record(name_of(key), field_varint(1, 5) + record, NOW)


def test_v1_only_is_refused(key: Ed25519PrivateKey) -> None:
    record = make_record(key, VALUE, 1, LATER, HOUR_NS)
    v1_only = b"".join(
        field_bytes(n, v) if isinstance(v, bytes) else field_varint(n, v)
        for n, v in sorted(decode_fields(record, {1: 2, 2: 2, 3: 0, 4: 2, 5: 0, 6: 0}).items())
    )
    with pytest.raises(IpnsV1Only) as err:
        validate_record(name_of(key), v1_only, NOW)
    assert err.value.details["reason"] == "v1_only"


def test_v2_signature_by_another_key(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    record = make_record(other_key, VALUE, 1, LATER, HOUR_NS)
    with pytest.raises(IpnsBadSignature):
        validate_record(name_of(key), record, NOW)


def test_embedded_key_not_matching_the_name(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    record = make_record(other_key, VALUE, 1, LATER, HOUR_NS, embed_public_key=True)
    with pytest.raises(IpnsKeyMismatch):
        validate_record(name_of(key), record, NOW)


def test_sha256_name_needs_and_checks_the_embedded_key(
    key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    import hashlib

    from multiformats import CID, multihash

    pb = libp2p_public_key_bytes(public_key_of(key))
    hashed = CID("base36", 1, "libp2p-key", multihash.wrap(hashlib.sha256(pb).digest(), "sha2-256")).encode()
    ok = make_record(key, VALUE, 1, LATER, HOUR_NS, embed_public_key=True)
    assert validate_record(hashed, ok, NOW).public_key == public_key_of(key)
    with pytest.raises(IpnsMalformed, match="no public key"):
        validate_record(hashed, make_record(key, VALUE, 1, LATER, HOUR_NS), NOW)
    with pytest.raises(IpnsKeyMismatch):
        validate_record(hashed, make_record(other_key, VALUE, 1, LATER, HOUR_NS, embed_public_key=True), NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [("value", b"/ipfs/somethingelse"), ("sequence", 99), ("ttl", 1), ("validity", b"2099-01-01T00:00:00Z")],
)
def test_v1_fields_disagreeing_with_cbor_data(key: Ed25519PrivateKey, field: str, value: int | bytes) -> None:
    record = rebuild(make_record(key, VALUE, 1, LATER, HOUR_NS), **{field: value})
    with pytest.raises(IpnsDataMismatch) as err:
        validate_record(name_of(key), record, NOW)
    assert err.value.field == field


def test_v1_signature_without_v1_fields_is_a_mismatch(key: Ed25519PrivateKey) -> None:
    record = make_record(key, VALUE, 1, LATER, HOUR_NS, v1_compatible=False)
    with pytest.raises(IpnsDataMismatch):
        validate_record(name_of(key), field_bytes(2, b"x" * 64) + record, NOW)


def test_broken_v1_signature_is_ignored(key: Ed25519PrivateKey) -> None:
    record = rebuild(make_record(key, VALUE, 1, LATER, HOUR_NS), sig_v1=b"\x00" * 64)
    assert validate_record(name_of(key), record, NOW).path == VALUE


def test_expired(key: Ed25519PrivateKey) -> None:
    record = make_record(key, VALUE, 1, NOW - timedelta(microseconds=1), HOUR_NS)
    with pytest.raises(IpnsExpired) as err:
        validate_record(name_of(key), record, NOW)
    assert err.value.validity.startswith("2026-11-25T11:59:59.999999")
    with pytest.raises(IpnsExpired):
        validate_record(name_of(key), make_record(key, VALUE, 1, NOW, HOUR_NS), NOW)


def _signed_data_record(key: Ed25519PrivateKey, doc: dict[str, object]) -> bytes:
    data = dag_cbor.encode(doc)  # type: ignore[arg-type]
    return field_bytes(8, key.sign(b"ipns-signature:" + data)) + field_bytes(9, data)


@pytest.mark.parametrize(
    "doc",
    [
        {
            "Value": b"/ipfs/x",
            "Validity": b"2099-01-01T00:00:00Z",
            "ValidityType": 1,
            "Sequence": 0,
            "TTL": 0,
        },
        {"Value": b"/ipfs/x", "Validity": b"tomorrow", "ValidityType": 0, "Sequence": 0, "TTL": 0},
        {"Value": "/ipfs/x", "Validity": b"2099-01-01T00:00:00Z", "ValidityType": 0, "Sequence": 0, "TTL": 0},
        {
            "Value": b"/ipfs/x",
            "Validity": b"2099-01-01T00:00:00Z",
            "ValidityType": 0,
            "Sequence": -1,
            "TTL": 0,
        },
        {
            "Value": b"/ipfs/x",
            "Validity": b"2099-02-30T00:00:00Z",
            "ValidityType": 0,
            "Sequence": 0,
            "TTL": 0,
        },
    ],
)
def test_bad_signed_data(key: Ed25519PrivateKey, doc: dict[str, object]) -> None:
    with pytest.raises(IpnsMalformed):
        validate_record(name_of(key), _signed_data_record(key, doc), NOW)


def test_data_that_is_not_cbor(key: Ed25519PrivateKey) -> None:
    data = b"\xff\x00"
    record = field_bytes(8, key.sign(b"ipns-signature:" + data)) + field_bytes(9, data)
    with pytest.raises(IpnsMalformed, match="DAG-CBOR"):
        validate_record(name_of(key), record, NOW)


def test_all_refusals_share_one_root() -> None:
    for cls in (
        IpnsRecordTooLarge,
        IpnsMalformed,
        IpnsV1Only,
        IpnsBadSignature,
        IpnsDataMismatch,
        IpnsExpired,
        IpnsKeyMismatch,
        IpnsSequenceNotNewer,
    ):
        assert issubclass(cls, IpnsRecordError)


def test_check_sequence(key: Ed25519PrivateKey) -> None:
    check_sequence(1, None)
    check_sequence(6, 5)
    for stale in (5, 4):
        with pytest.raises(IpnsSequenceNotNewer) as err:
            check_sequence(stale, 5)
        assert (err.value.sequence, err.value.seen) == (stale, 5) and err.value.http_status == 409
    a = validate_record(name_of(key), make_record(key, VALUE, 3, LATER, HOUR_NS), NOW)
    b = validate_record(name_of(key), make_record(key, VALUE, 4, LATER, HOUR_NS), NOW)
    check_sequence(b, a)
    with pytest.raises(IpnsSequenceNotNewer):
        check_sequence(a, b)


@pytest.mark.parametrize(
    ("text", "expected_ns_after_second"),
    [
        (b"2123-08-14T12:17:03.694052Z", 694052000),
        (b"2123-08-14T12:17:03.000000001Z", 1),
        (b"2123-08-14T12:17:03Z", 0),
        (b"2123-08-14T14:17:03.5+02:00", 500000000),
    ],
)
def test_parse_validity(text: bytes, expected_ns_after_second: int) -> None:
    base = parse_validity(b"2123-08-14T12:17:03Z")
    assert parse_validity(text) - base == expected_ns_after_second


def test_format_validity_like_go_rfc3339nano() -> None:
    assert (
        format_validity(datetime(2123, 8, 14, 12, 17, 3, 694052, tzinfo=UTC))
        == b"2123-08-14T12:17:03.694052Z"
    )
    assert format_validity(datetime(2123, 8, 14, 12, 17, 3, 500000, tzinfo=UTC)) == b"2123-08-14T12:17:03.5Z"
    assert format_validity(datetime(2123, 8, 14, 12, 17, 3, tzinfo=UTC)) == b"2123-08-14T12:17:03Z"


def test_make_record_refuses_to_build_an_oversized_record(key: Ed25519PrivateKey) -> None:
    with pytest.raises(IpnsRecordTooLarge):
        make_record(key, "/ipfs/" + "a" * MAX_RECORD_BYTES, 1, LATER, HOUR_NS)


@settings(max_examples=25, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_names_agree_with_the_multiformats_library(seed: bytes) -> None:
    from multiformats import CID, multihash

    from registry.trust.keys import private_key_from_raw

    pub = public_key_of(private_key_from_raw(seed))
    mh = multihash.wrap(libp2p_public_key_bytes(pub), "identity")
    reference = CID("base36", 1, "libp2p-key", mh).encode("base36")
    assert ipns_name(pub) == reference
    assert parse_ipns_name(reference.upper()).canonical == reference  # base36upper "K..."
    assert parse_ipns_name(CID("base32", 1, "libp2p-key", mh).encode("base32")).canonical == reference


def test_missing_v1_field_reads_as_its_default_when_v1_signed(key: Ed25519PrivateKey) -> None:
    from registry.ipns import record as ipns

    def without_ttl(record: bytes) -> bytes:
        fields = decode_fields(record, ipns._WIRE)
        del fields[6]
        return b"".join(
            field_varint(n, v) if isinstance(v, int) else field_bytes(n, v) for n, v in sorted(fields.items())
        )

    assert validate_record(name_of(key), without_ttl(make_record(key, VALUE, 1, LATER, 0)), NOW).ttl_ns == 0
    with pytest.raises(IpnsDataMismatch) as err:
        validate_record(name_of(key), without_ttl(make_record(key, VALUE, 1, LATER, HOUR_NS)), NOW)
    assert err.value.field == "ttl"


def test_empty_v1_signature_counts_as_absent(key: Ed25519PrivateKey) -> None:
    record = make_record(key, VALUE, 1, LATER, HOUR_NS, v1_compatible=False)
    assert validate_record(name_of(key), field_bytes(2, b"") + record, NOW).path == VALUE
