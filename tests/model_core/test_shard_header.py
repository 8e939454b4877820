"""safetensors header validation: hostile bytes give PackInvalid with a sentence, never another exception."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.errors import PackInvalid
from model_core.manifest import parse_manifest
from model_core.shard_header import parse_header

LIMIT = 100_000_000


def shard(header: object, data: bytes = b"") -> bytes:
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


def test_valid_header_with_metadata() -> None:
    raw = shard(
        {
            "__metadata__": {"format": "pt"},
            "b": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]},
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        },
        bytes(12),
    )
    h = parse_header(raw, len(raw), "s", LIMIT)
    assert [t.name for t in h.tensors] == ["a", "b"] and h.metadata == {"format": "pt"} and h.data_bytes == 12


@pytest.mark.parametrize(
    ("header", "data", "match"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4), "needs 8"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8), "gap"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8), "trailing bytes"),
        ({"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, bytes(4), "dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "not valid"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4), "begin <= end"),
        ({"a": {"dtype": "F32", "shape": [1]}}, bytes(4), "exactly dtype, shape and data_offsets"),
        ([1, 2], b"", "JSON object"),
    ],
)
def test_malformed_headers(header: object, data: bytes, match: str) -> None:
    raw = shard(header, data)
    with pytest.raises(PackInvalid, match=match):
        parse_header(raw, len(raw), "s", LIMIT)


def test_duplicate_tensor_names() -> None:
    body = b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}'
    raw = struct.pack("<Q", len(body)) + body + bytes(2)
    with pytest.raises(PackInvalid, match="'a' twice"):
        parse_header(raw, len(raw), "s", LIMIT)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_header_parser(raw: bytes) -> None:
    try:
        parse_header(raw, len(raw), "s", LIMIT)
    except PackInvalid as e:
        assert "'s'" in e.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "x"]), json_values, max_size=4))
def test_arbitrary_tensor_entries_never_crash(entry: dict) -> None:
    raw = shard({"t": entry}, bytes(16))
    try:
        parse_header(raw, len(raw), "s", LIMIT)
    except PackInvalid:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["format", "config", "shards", "model_name", "x"]), json_values, max_size=5
    )
)
def test_arbitrary_manifests_never_crash(data: dict) -> None:
    try:
        parse_manifest(json.dumps(data).encode())
    except PackInvalid:
        pass
