"""CARv1 streaming writer and reader (and the CARv2 wrapper), verifying every block against its CID.

A CAR is how DAGs move between this store and IPFS peers (``dag/import``, ``?format=car``), so a
reader never yields a block it has not re-hashed, and errors say which CID or byte offset is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import dag_cbor
from multiformats import CID

from pinner.cids import block_matches, check_supported, cid_from_bytes, cid_str
from pinner.content_errors import InvalidCar, InvalidCid
from pinner.dagpb import encode_varint

CARV2_PRAGMA = bytes.fromhex("0aa16776657273696f6e02")
CARV2_HEADER_SIZE = 40


@dataclass(frozen=True, slots=True)
class CarLimits:
    """Sizes a CAR reader accepts (an attacker controls the stream)."""

    max_header_bytes: int = 64 * 1024
    max_block_bytes: int = 2 * 1024 * 1024 + 1024
    max_roots: int = 64


def encode_header(roots: Sequence[CID]) -> bytes:
    """The CARv1 header: varint length + DAG-CBOR ``{roots, version: 1}``."""
    header = dag_cbor.encode({"roots": list(roots), "version": 1})
    return encode_varint(len(header)) + header


def write_car(roots: Sequence[CID], blocks: Iterable[tuple[CID | bytes, bytes]]) -> Iterator[bytes]:
    """Yields a CARv1 stream: the header, then one section per block, in the order given."""
    yield encode_header(roots)
    for cid, data in blocks:
        raw_cid = bytes(cid)
        yield encode_varint(len(raw_cid) + len(data)) + raw_cid
        if data:
            yield data


class _Stream:
    """Reads exact byte counts, tracking the offset for error messages, within an optional bound."""

    def __init__(self, stream: BinaryIO, limit: int | None = None) -> None:
        self._stream = stream
        self.offset = 0
        self._limit = limit

    def read(self, n: int, what: str) -> bytes:
        if self._limit is not None and self.offset + n > self._limit:
            raise InvalidCar(
                f"{what} at offset {self.offset} runs past the end of the CAR data", offset=self.offset
            )
        parts: list[bytes] = []
        got = 0
        while got < n:
            piece = self._stream.read(n - got)
            if not piece:
                raise InvalidCar(
                    f"CAR truncated at offset {self.offset + got} while reading {what}",
                    offset=self.offset + got,
                )
            parts.append(piece)
            got += len(piece)
        self.offset += n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def at_end(self) -> bool:
        if self._limit is not None:
            return self.offset >= self._limit
        return False

    def varint(self, what: str, *, eof_ok: bool = False) -> int | None:
        value = shift = 0
        start = self.offset
        while True:
            if self._limit is not None and self.offset >= self._limit:
                if eof_ok and self.offset == start:
                    return None
                raise InvalidCar(f"truncated varint for {what} at offset {start}", offset=start)
            b = self._stream.read(1)
            if not b:
                if eof_ok and self.offset == start:
                    return None
                raise InvalidCar(
                    f"CAR truncated at offset {self.offset} in the varint of {what}", offset=start
                )
            self.offset += 1
            value |= (b[0] & 0x7F) << shift
            if not b[0] & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise InvalidCar(f"varint for {what} at offset {start} is too long", offset=start)


def _decode_header(raw: bytes, offset: int, limits: CarLimits) -> tuple[int, list[CID]]:
    try:
        header = dag_cbor.decode(raw)
    except Exception as e:
        raise InvalidCar(f"CAR header at offset {offset} is not DAG-CBOR: {e}", offset=offset) from e
    if not isinstance(header, dict) or not isinstance(header.get("version"), int):
        raise InvalidCar(f"CAR header at offset {offset} has no version", offset=offset)
    version = header["version"]
    assert isinstance(version, int)
    if version == 2:
        return 2, []
    if version != 1:
        raise InvalidCar(f"unsupported CAR version {version!r}", offset=offset)
    roots_raw = header.get("roots")
    if not isinstance(roots_raw, list):
        raise InvalidCar("CARv1 header roots must be a list of CIDs", offset=offset)
    if len(roots_raw) > limits.max_roots:
        raise InvalidCar(f"CAR header lists {len(roots_raw)} roots, over {limits.max_roots}", offset=offset)
    roots: list[CID] = []
    for root in roots_raw:
        if not isinstance(root, CID):
            raise InvalidCar("CARv1 header roots must be a list of CIDs", offset=offset)
        roots.append(root if root.version == 0 else root.set(base="base32"))
    return 1, roots


def _read_v1_header(stream: _Stream, limits: CarLimits) -> tuple[int, list[CID]]:
    start = stream.offset
    length = stream.varint("the header length")
    assert length is not None
    if length == 0 or length > limits.max_header_bytes:
        raise InvalidCar(f"CAR header length {length} at offset {start} is out of range", offset=start)
    return _decode_header(stream.read(length, "the header"), start, limits)


def _split_section(section: bytes, offset: int) -> tuple[bytes, bytes]:
    """Splits a section into (binary CID, block data)."""
    if section[:2] == b"\x12\x20":
        n = 34
    else:
        pos = 0
        for _ in range(3):  # version, codec, multihash code
            while pos < len(section) and section[pos] & 0x80:
                pos += 1
            pos += 1
        length = 0
        shift = 0
        while pos < len(section):
            b = section[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        n = pos + length
    if n > len(section):
        raise InvalidCar(f"CID at offset {offset} runs past its section", offset=offset)
    return section[:n], section[n:]


def _iter_blocks(stream: _Stream, limits: CarLimits) -> Iterator[tuple[CID, bytes]]:
    while not stream.at_end():
        start = stream.offset
        length = stream.varint("a section length", eof_ok=True)
        if length is None:
            return
        if length == 0 or length > limits.max_block_bytes + 128:
            raise InvalidCar(f"CAR section length {length} at offset {start} is out of range", offset=start)
        cid_raw, data = _split_section(stream.read(length, "a block"), start)
        try:
            cid = cid_from_bytes(cid_raw)
            check_supported(cid)
        except InvalidCid as e:
            raise InvalidCar(f"block at offset {start}: {e.message}", offset=start) from e
        except Exception as e:
            raise InvalidCar(f"block at offset {start} has an invalid CID: {e}", offset=start) from e
        if not block_matches(cid_raw, data):
            shown = cid_str(cid)
            raise InvalidCar(
                f"block {shown} at offset {start} does not match its CID", cid=shown, offset=start
            )
        yield cid, data


def read_car(
    stream: BinaryIO, limits: CarLimits | None = None
) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Reads the header now and returns (roots, lazy iterator of verified (CID, block)).

    Accepts CARv1, and CARv2 (its inner CARv1 payload; the index is ignored). Raises InvalidCar,
    naming the offset or CID, for truncation, bad framing or a block that does not hash to its CID.
    """
    limits = limits or CarLimits()
    outer = _Stream(stream)
    version, roots = _read_v1_header(outer, limits)
    if version == 1:
        return roots, _iter_blocks(outer, limits)
    if outer.offset != len(CARV2_PRAGMA):
        raise InvalidCar("CARv2 pragma is malformed", offset=0)
    v2 = outer.read(CARV2_HEADER_SIZE, "the CARv2 header")
    data_offset = int.from_bytes(v2[16:24], "little")
    data_size = int.from_bytes(v2[24:32], "little")
    if data_offset < outer.offset:
        raise InvalidCar(f"CARv2 data offset {data_offset} points into its header", offset=outer.offset)
    outer.read(data_offset - outer.offset, "padding before the CARv2 data")
    inner = _Stream(stream, limit=data_size)
    inner_version, roots = _read_v1_header(inner, limits)
    if inner_version != 1:
        raise InvalidCar(f"CARv2 payload must be a CARv1, found version {inner_version}", offset=data_offset)
    return roots, _iter_blocks(inner, limits)


def carv2_wrap(car_v1: bytes) -> bytes:
    """A CARv2 around a CARv1 payload, without an index (for tests and exports that want v2)."""
    data_offset = len(CARV2_PRAGMA) + CARV2_HEADER_SIZE
    header = bytes(16) + data_offset.to_bytes(8, "little") + len(car_v1).to_bytes(8, "little") + bytes(8)
    return CARV2_PRAGMA + header + car_v1
