"""The parsers that take untrusted bytes, each with the only errors it may raise and seeds to mutate.

``make fuzz`` drives every target with many hypothesis examples (tests/fuzz/test_fuzz.py, marked
``fuzz``); the default run drives each with a few (tests/fuzz/test_fuzz_smoke.py). A target passes when
the parser returns or raises one of its typed errors: anything else (KeyError, RecursionError, a plain
ValueError...) is a bug.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING

from model_core.errors import PackInvalid
from model_core.format.errors import InvalidManifest
from model_core.format.pack import parse_manifest_bytes
from model_core.shard_header import parse_header
from pinner.car import CarLimits, read_car, write_car
from pinner.content_errors import InvalidCar
from pinner.dagpb import DagPbError, PBLink, decode_node, encode_node
from registry.ipns.name import ipns_name
from registry.ipns.record import make_record, validate_record
from registry.trust.errors import InvalidIpnsName, IpnsRecordError
from registry.trust.keys import generate_private_key, public_key_of

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

NOW = datetime(2030, 1, 1, tzinfo=UTC)
_RAW_CID = bytes((0x01, 0x55, 0x12, 0x20))


@dataclass(frozen=True)
class Target:
    name: str
    parse: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: tuple[bytes, ...]


def _manifest(raw: bytes) -> object:
    return parse_manifest_bytes(raw)


def _manifest_seed() -> bytes:
    data = b"\x00" * 64
    return json.dumps(
        {
            "format": "safetensors",
            "model_name": "tiny",
            "model_version": "1.0.0",
            "config": {"vocab_size": 256, "d_model": 64},
            "shards": [
                {
                    "filename": "model-00001-of-00001.safetensors",
                    "cid": "bafkreiaqy3amwgmw2hjs2lx7wrpimcbmclpe6cwpkmvmdrkbbxcuiyd2qq",
                    "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                }
            ],
        }
    ).encode()


def _header(raw: bytes) -> object:
    return parse_header(raw, len(raw) + 16, "fuzz.safetensors", 1024 * 1024)


def _header_seed() -> bytes:
    head = json.dumps(
        {"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    ).encode()
    return struct.pack("<Q", len(head)) + head


def _car(raw: bytes) -> object:
    limits = CarLimits()
    roots, blocks = read_car(io.BytesIO(raw), limits)
    return roots, list(islice(blocks, 10_000))


def _car_seed() -> bytes:
    block = b"hello fuzz"
    cid = _RAW_CID + hashlib.sha256(block).digest()
    from multiformats import CID

    c = CID.decode(cid)
    return b"".join(write_car([c], [(c, block)]))


def _dagpb(raw: bytes) -> object:
    return decode_node(raw)


def _dagpb_seed() -> bytes:
    link = PBLink(_RAW_CID + hashlib.sha256(b"x").digest(), "a", 1)
    return encode_node([link], b"\x08\x01")


_KEY = generate_private_key()
_NAME = ipns_name(public_key_of(_KEY))


def _ipns(raw: bytes) -> object:
    return validate_record(_NAME, raw, NOW)


def _ipns_seed() -> bytes:
    return make_record(_KEY, "/ipfs/bafkqaaa", 3, NOW + timedelta(hours=1), 60 * 10**9)


TARGETS = (
    Target("manifest-json", _manifest, (InvalidManifest,), (_manifest_seed(),)),
    Target("safetensors-header", _header, (PackInvalid,), (_header_seed(),)),
    Target("car", _car, (InvalidCar,), (_car_seed(),)),
    Target("dag-pb", _dagpb, (DagPbError,), (_dagpb_seed(),)),
    Target("ipns-record", _ipns, (IpnsRecordError, InvalidIpnsName), (_ipns_seed(),)),
)


# JSON that has broken parsers before: deep nesting, an integer Python refuses to convert, an infinite float,
# a duplicate key, bad UTF-8, a bare constant.
NASTY_JSON = (
    b"[" * 5000 + b"]" * 5000,
    b"9" * 5000,
    b'{"a": ' + b"1" * 4301 + b"}",
    b'{"a": 1e99999}',
    b'{"a":1,"a":2}',
    b"\xff\xfe",
    b"NaN",
)


def framed(header: bytes) -> bytes:
    """A safetensors prefix (8-byte little-endian length) and ``header``."""
    return struct.pack("<Q", len(header)) + header


def _mutate(seed: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 flip a byte, 1 insert one, 2 delete one, 3 cut the rest."""
    buf = bytearray(seed)
    for kind, pos, value in edits:
        if not buf and kind != 1:
            continue
        at = pos % (len(buf) + 1)
        if kind == 0 and at < len(buf):
            buf[at] ^= value or 1
        elif kind == 1:
            buf.insert(at, value)
        elif kind == 2 and at < len(buf):
            del buf[at]
        elif kind == 3:
            del buf[at:]
    return bytes(buf)


def inputs(target: Target) -> SearchStrategy[bytes]:
    """A hypothesis strategy of hostile inputs for ``target``: raw bytes, mutated seeds and, for the JSON
    parsers, JSON documents (deep, huge numbers, odd keys)."""
    from hypothesis import strategies as st

    edits = st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=8
    )
    mutated = st.builds(_mutate, st.sampled_from(target.seeds), edits)
    options = [st.binary(max_size=2048), mutated]
    if target.name in ("manifest-json", "safetensors-header"):
        leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
        docs = st.recursive(
            leaves,
            lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
            max_leaves=30,
        )
        encoded = st.builds(lambda d: json.dumps(d).encode(), docs)
        nasty = st.sampled_from(NASTY_JSON)
        if target.name == "safetensors-header":
            encoded = st.builds(framed, encoded | nasty)
        else:
            encoded = encoded | nasty
        options.append(encoded)
    return st.one_of(*options)


def check(target: Target, data: bytes) -> None:
    """Run the parser; only its typed errors may come out."""
    try:
        target.parse(data)
    except target.allowed:
        pass
