"""Validation of a safetensors header before torch (or the safetensors library) touches the file.

Checks: 8-byte length within the limit and the file, well-formed JSON without duplicate keys, dtype on
a whitelist, shapes of non-negative ints, offsets that exactly match the shape, start at 0, are
contiguous and non-overlapping and end at the end of the file, ``__metadata__`` of strings only.
Torch-free, so the sandbox supervisor can size a pack before loading it.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_core.errors import PackInvalid, bounded, q

Buffer = bytes | bytearray | memoryview | mmap.mmap
DTYPE_SIZES: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # relative to the start of the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class ShardHeader:
    header_len: int
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str]
    deferred: bool = False  # only the length was checked; the worker parses it under the sandbox's limits

    @property
    def data_start(self) -> int:
        return 8 + self.header_len

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def header_length(prefix: Buffer, file_size: int, shard: str, max_bytes: int) -> int:
    """The declared header length, checked against the limit and the file size."""
    if file_size < 8 or len(prefix) < 8:
        raise PackInvalid(
            f"shard {q(shard)} is {file_size} bytes, too short for a safetensors header", shard=shard
        )
    (n,) = struct.unpack("<Q", bytes(prefix[:8]))
    if n > max_bytes:
        raise PackInvalid(
            f"shard {q(shard)} declares a {n}-byte safetensors header, more than the limit of {max_bytes}",
            shard=shard,
        )
    if 8 + n > file_size:
        raise PackInvalid(
            f"shard {q(shard)} declares a {n}-byte header but the file is only {file_size} bytes (truncated?)",
            shard=shard,
        )
    if n < 2:
        raise PackInvalid(f"shard {q(shard)} has an empty safetensors header", shard=shard)
    return n


def parse_header(buf: Buffer, file_size: int, shard: str, max_bytes: int) -> ShardHeader:
    """Validate the header at the start of ``buf`` (which holds at least 8 + header length bytes).

    Raises:
        PackInvalid: naming the shard and what is wrong with it.
    """
    n = header_length(buf, file_size, shard, max_bytes)
    if len(buf) < 8 + n:
        raise PackInvalid(f"shard {q(shard)} ended inside its header", shard=shard)
    try:
        data = json.loads(bytes(buf[8 : 8 + n]).decode("utf-8"), object_pairs_hook=_pairs(shard))
    except (ValueError, RecursionError) as e:  # ValueError: bad UTF-8, bad JSON, an int over 4,300 digits
        raise PackInvalid(f"shard {q(shard)} header is not valid JSON: {bounded(e)}", shard=shard) from None
    if not isinstance(data, dict):
        raise PackInvalid(f"shard {q(shard)} header must be a JSON object", shard=shard)
    metadata = data.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise PackInvalid(f"shard {q(shard)} __metadata__ must map strings to strings", shard=shard)
    tensors = sorted(
        (_tensor(shard, name, spec) for name, spec in data.items()), key=lambda t: (t.begin, t.end)
    )
    cursor = 0
    for t in tensors:
        if t.begin != cursor:
            what = "overlaps the previous tensor" if t.begin < cursor else "leaves a gap before it"
            raise PackInvalid(
                f"shard {q(shard)} tensor {q(t.name)} starts at data offset {t.begin}, which {what} "
                f"(expected {cursor})",
                shard=shard,
                key=t.name,
            )
        cursor = t.end
    data_len = file_size - 8 - n
    if cursor != data_len:
        raise PackInvalid(
            f"shard {q(shard)} tensors end at data offset {cursor} but the data section is {data_len} bytes "
            f"({'truncated' if cursor > data_len else 'trailing bytes'})",
            shard=shard,
        )
    return ShardHeader(header_len=n, tensors=tuple(tensors), metadata=dict(metadata))


def read_header(
    path: Path, file_size: int, shard: str, max_bytes: int, parse_max_bytes: int | None = None
) -> ShardHeader:
    """Read and validate only the header of a shard file (the data is not read).

    A header longer than ``parse_max_bytes`` (but within ``max_bytes``) is not read at all: the result is
    ``deferred``, for a caller (the unlimited sandbox supervisor) that must not hold or parse it.
    """
    with open(path, "rb") as f:
        prefix = f.read(8)
        n = header_length(prefix, file_size, shard, max_bytes)
        if parse_max_bytes is not None and n > parse_max_bytes:
            return ShardHeader(header_len=n, tensors=(), metadata={}, deferred=True)
        body = f.read(n)
    return parse_header(prefix + body, file_size, shard, max_bytes)


def _tensor(shard: str, name: str, spec: Any) -> TensorInfo:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise PackInvalid(
            f"shard {q(shard)} tensor {q(name)} entry must have exactly dtype, shape and data_offsets",
            shard=shard,
            key=name,
        )
    dtype = spec["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise PackInvalid(
            f"shard {q(shard)} tensor {q(name)} has dtype {q(dtype)}, not one of {', '.join(DTYPE_SIZES)}",
            shard=shard,
            key=name,
        )
    shape = spec["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise PackInvalid(
            f"shard {q(shard)} tensor {q(name)} shape {q(shape)} is not a list of ints", shard=shard
        )
    if any(d < 0 for d in shape) or len(shape) > 8:
        raise PackInvalid(
            f"shard {q(shard)} tensor {q(name)} shape {q(shape)} is not valid", shard=shard, key=name
        )
    offsets = spec["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise PackInvalid(
            f"shard {q(shard)} tensor {q(name)} data_offsets {q(offsets)} must be two ints, begin <= end",
            shard=shard,
            key=name,
        )
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise PackInvalid(
            f"shard {q(shard)} tensor {q(name)} spans {offsets[1] - offsets[0]} bytes but {dtype}{shape} "
            f"needs {expected}",
            shard=shard,
            key=name,
        )
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape), begin=offsets[0], end=offsets[1])


def _pairs(shard: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise PackInvalid(f"shard {q(shard)} header has the key {q(k)} twice", shard=shard, key=k)
            out[k] = v
        return out

    return hook
