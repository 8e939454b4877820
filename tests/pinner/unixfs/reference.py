"""An independent, recursive transcription of go-unixfs's balanced ``Layout``/``fillNodeRec``, used to
check the streaming builder on trees too deep for real files (tiny chunks, 2-3 links per node)."""

from __future__ import annotations

import hashlib

from pinner.dagpb import PBLink, encode_node
from pinner.unixfs.format import FILE, encode_data


def _cid(version: int, codec: int, block: bytes) -> bytes:
    digest = hashlib.sha256(block).digest()
    if version == 0:
        return b"\x12\x20" + digest
    return bytes((1, codec, 0x12, 0x20)) + digest


def reference_root(data: bytes, chunk: int, max_links: int, cid_version: int, raw_leaves: bool) -> bytes:
    """Binary root CID as go-unixfs's balanced builder computes it."""
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    pos = 0

    def more() -> bool:
        return pos < len(chunks)

    def leaf() -> tuple[bytes, int, int]:
        nonlocal pos
        c = chunks[pos]
        pos += 1
        if raw_leaves:
            return _cid(1, 0x55, c), len(c), len(c)
        block = encode_node([], encode_data(FILE, c if c else None, len(c)))
        return _cid(cid_version, 0x70, block), len(block), len(c)

    def node(children: list[tuple[bytes, int, int]]) -> tuple[bytes, int, int]:
        sizes = [s for _c, _t, s in children]
        block = encode_node(
            [PBLink(c, "", t) for c, t, _s in children], encode_data(FILE, None, sum(sizes), sizes)
        )
        return _cid(cid_version, 0x70, block), len(block) + sum(t for _c, t, _s in children), sum(sizes)

    def fill(children: list[tuple[bytes, int, int]], depth: int) -> tuple[bytes, int, int]:
        while len(children) < max_links and more():
            children.append(leaf() if depth == 1 else fill([], depth - 1))
        return node(children)

    root = leaf()
    depth = 1
    while more():
        root = fill([root], depth)
        depth += 1
    return root[0]
