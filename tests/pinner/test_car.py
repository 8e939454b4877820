"""CAR round trips, CARv2 payloads, and truncated or corrupt CARs rejected with the CID or offset."""

from __future__ import annotations

import hashlib
import io

import dag_cbor
import pytest
from multiformats import CID

from pinner.car import carv2_wrap, encode_header, read_car, write_car
from pinner.content_errors import InvalidCar
from pinner.dagpb import encode_varint


def _raw_block(data: bytes) -> tuple[CID, bytes]:
    return CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(data).digest())), data


BLOCKS = [_raw_block(b"a" * n) for n in (0, 1, 100, 300)]
ROOT = BLOCKS[-1][0]


def _car(blocks: list[tuple[CID, bytes]] = BLOCKS) -> bytes:
    return b"".join(write_car([ROOT], blocks))


def test_round_trip() -> None:
    roots, it = read_car(io.BytesIO(_car()))
    assert roots == [ROOT]
    assert [(bytes(c), d) for c, d in it] == [(bytes(c), d) for c, d in BLOCKS]


def test_header_is_dag_cbor_roots_and_version_1() -> None:
    raw = _car()
    n = raw[0]
    assert dag_cbor.decode(raw[1 : 1 + n]) == {"roots": [ROOT], "version": 1}


def test_carv2_payload_is_read() -> None:
    roots, it = read_car(io.BytesIO(carv2_wrap(_car()) + b"index bytes ignored"))
    assert roots == [ROOT]
    assert len(list(it)) == len(BLOCKS)


def test_every_truncation_is_an_error_naming_an_offset() -> None:
    raw = _car()
    header_len = len(encode_header([ROOT]))
    boundaries = {header_len}
    pos = header_len
    for cid, data in BLOCKS:
        pos += len(encode_varint(len(bytes(cid)) + len(data))) + len(bytes(cid)) + len(data)
        boundaries.add(pos)
    for cut in range(1, len(raw)):
        if cut in boundaries:
            continue  # a CAR cut at a section boundary is a shorter valid CAR
        with pytest.raises(InvalidCar, match="offset"):
            _roots, it = read_car(io.BytesIO(raw[:cut]))
            list(it)


def test_corrupt_block_names_its_cid() -> None:
    raw = bytearray(_car())
    raw[-1] ^= 0xFF
    _roots, it = read_car(io.BytesIO(bytes(raw)))
    with pytest.raises(InvalidCar, match=str(ROOT)) as e:
        list(it)
    assert e.value.details["cid"] == str(ROOT)


@pytest.mark.parametrize(
    ("raw", "msg"),
    [
        (b"", "truncated"),
        (encode_varint(3) + b"\xa0\xa0\xa0", "DAG-CBOR"),
        (encode_varint(len(dag_cbor.encode({"version": 3}))) + dag_cbor.encode({"version": 3}), "version 3"),
        (encode_varint(10**9), "out of range"),
    ],
)
def test_bad_headers(raw: bytes, msg: str) -> None:
    with pytest.raises(InvalidCar, match=msg):
        read_car(io.BytesIO(raw))


def test_unsupported_hash_function_is_refused() -> None:
    cid = CID("base32", 1, "raw", ("sha2-512", hashlib.sha512(b"x").digest()))
    raw = b"".join(write_car([cid], [(cid, b"x")]))
    _roots, it = read_car(io.BytesIO(raw))
    with pytest.raises(InvalidCar, match="sha2-512"):
        list(it)


def test_oversized_section_refused_before_reading_it() -> None:
    raw = encode_header([ROOT]) + encode_varint(64 * 1024 * 1024)
    _roots, it = read_car(io.BytesIO(raw))
    with pytest.raises(InvalidCar, match="out of range"):
        list(it)
