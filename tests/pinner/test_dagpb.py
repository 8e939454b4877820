"""dag-pb codec: Kubo's byte order (Links before Data, empty Name written) and strict decoding."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pinner.dagpb import DagPbError, PBLink, decode_node, decode_varint, encode_node, encode_varint

CID0 = b"\x12\x20" + hashlib.sha256(b"x").digest()


@given(st.integers(0, 2**63 - 1))
def test_varint_round_trip(n: int) -> None:
    raw = encode_varint(n)
    assert decode_varint(raw, 0) == (n, len(raw))


def test_links_come_before_data_and_empty_name_is_written() -> None:
    raw = encode_node([PBLink(CID0, "", 7)], b"\x08\x02")
    assert raw[0] == 0x12  # field 2 (Links) first
    assert b"\x12\x00" in raw  # Name present though empty
    assert raw.endswith(b"\x0a\x02\x08\x02")  # Data last


@given(
    st.lists(st.tuples(st.text(max_size=8), st.integers(0, 2**40)), max_size=5),
    st.one_of(st.none(), st.binary(max_size=40)),
)
def test_encode_decode_round_trip(links: list[tuple[str, int]], data: bytes | None) -> None:
    pb_links = [PBLink(CID0, name, size) for name, size in links]
    node = decode_node(encode_node(pb_links, data))
    assert list(node.links) == pb_links
    assert node.data == data


@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\x01\x00" + encode_node([PBLink(CID0)], None),  # Data before Links
        b"\x1a\x00",  # unknown field 3
        b"\x0a\x05ab",  # Data runs past the end
        b"\x12\x02\x18\x01",  # link without Hash
    ],
)
def test_malformed_nodes_are_rejected(raw: bytes) -> None:
    with pytest.raises(DagPbError):
        decode_node(raw)
