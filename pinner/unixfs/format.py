"""The UnixFS ``Data`` protobuf (inside a dag-pb node's Data), encoded exactly as go-unixfs does.

Fields: Type (1), Data (2), filesize (3), blocksizes (4, repeated, not packed). Also the
pre-computed envelope of a dag-pb leaf, so a leaf can be hashed without copying its bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pinner.dagpb import DagPbError, _read_fields, bytes_field, encode_varint, uint_field

RAW_TYPE = 0
DIRECTORY = 1
FILE = 2
METADATA = 3
SYMLINK = 4
HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixfsData:
    """A decoded UnixFS Data message (the fields a file reader needs)."""

    type: int
    data: bytes | None
    filesize: int | None
    blocksizes: tuple[int, ...]


def encode_data(
    node_type: int, data: bytes | None = None, filesize: int | None = None, blocksizes: Sequence[int] = ()
) -> bytes:
    """UnixFS Data bytes; ``None`` fields are omitted."""
    parts = [uint_field(1, node_type)]
    if data is not None:
        parts.append(bytes_field(2, data))
    if filesize is not None:
        parts.append(uint_field(3, filesize))
    parts.extend(uint_field(4, size) for size in blocksizes)
    return b"".join(parts)


def decode_data(buf: bytes) -> UnixfsData:
    """Decodes UnixFS Data; raises DagPbError when it is not one."""
    node_type: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    for field, _wire, value in _read_fields(buf):
        if field == 1 and isinstance(value, int):
            node_type = value
        elif field == 2 and not isinstance(value, int):
            data = bytes(value)
        elif field == 3 and isinstance(value, int):
            filesize = value
        elif field == 4 and isinstance(value, int):
            blocksizes.append(value)
        elif field == 4 and not isinstance(value, int):
            raise DagPbError("packed blocksizes are not produced by Kubo and not accepted")
    if node_type is None:
        raise DagPbError("UnixFS Data without a Type")
    return UnixfsData(node_type, data, filesize, tuple(blocksizes))


def leaf_envelope(length: int) -> tuple[bytes, bytes]:
    """(prefix, suffix) so that ``prefix + chunk + suffix`` is the dag-pb leaf of a ``length``-byte chunk.

    The leaf is a PBNode with only Data = UnixFS{Type: File, Data: chunk, filesize: length}; an empty
    chunk (the empty file) carries no Data field, as Kubo writes it.
    """
    if length == 0:
        inner = encode_data(FILE, None, 0)
        return bytes_field(1, inner), b""
    inner_prefix = uint_field(1, FILE) + encode_varint((2 << 3) | 2) + encode_varint(length)
    suffix = uint_field(3, length)
    inner_len = len(inner_prefix) + length + len(suffix)
    return encode_varint((1 << 3) | 2) + encode_varint(inner_len) + inner_prefix, suffix
