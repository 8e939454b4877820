"""Kubo's balanced layout, built bottom-up as leaves stream in, so memory is one pending list per level.

A level is flushed into a parent node only when one more link must join it, which gives exactly
go-unixfs's balanced tree: all leaves at one depth, every node full except along the right edge,
a single-chunk file is its own root, and nodes with one child are kept (never collapsed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from pinner.cids import DAG_PB, cid_bytes_v0, cid_bytes_v1
from pinner.dagpb import PBLink, encode_node
from pinner.unixfs.format import FILE, encode_data
from pinner.unixfs.params import UnixfsParams

NodeSink = Callable[[bytes, bytes], None]
"""Receives (binary CID, block bytes) of each interior node as it is made."""


@dataclass(frozen=True, slots=True)
class DagLink:
    """A child in the file DAG: binary CID, cumulative DAG size (Tsize) and file bytes it covers."""

    cid_bytes: bytes
    tsize: int
    size: int


def node_cid_bytes(params: UnixfsParams, block: bytes) -> bytes:
    """Binary CID of a dag-pb node under these params (v0 or v1 dag-pb, sha2-256)."""
    digest = hashlib.sha256(block).digest()
    return cid_bytes_v0(digest) if params.cid_version == 0 else cid_bytes_v1(DAG_PB, digest)


def file_node(params: UnixfsParams, children: list[DagLink]) -> tuple[bytes, DagLink]:
    """Encodes an interior File node over ``children``; returns (block, link to it)."""
    filesize = sum(c.size for c in children)
    data = encode_data(FILE, None, filesize, [c.size for c in children])
    block = encode_node([PBLink(c.cid_bytes, "", c.tsize) for c in children], data)
    cid = node_cid_bytes(params, block)
    return block, DagLink(cid, len(block) + sum(c.tsize for c in children), filesize)


class BalancedTree:
    """Accepts leaves in file order and returns the root link; interior nodes go to ``on_node``."""

    def __init__(self, params: UnixfsParams, on_node: NodeSink | None = None) -> None:
        self._params = params
        self._on_node = on_node
        self._levels: list[list[DagLink]] = [[]]
        self.leaf_count = 0

    def add_leaf(self, link: DagLink) -> None:
        self.leaf_count += 1
        self._add(0, link)

    def _add(self, level: int, link: DagLink) -> None:
        if level == len(self._levels):
            self._levels.append([])
        if len(self._levels[level]) == self._params.max_links:
            self._add(level + 1, self._flush(level))
        self._levels[level].append(link)

    def _flush(self, level: int) -> DagLink:
        block, link = file_node(self._params, self._levels[level])
        self._levels[level] = []
        if self._on_node is not None:
            self._on_node(link.cid_bytes, block)
        return link

    def finish(self) -> DagLink:
        """The root: the lone leaf for a one-chunk file, else the top interior node."""
        if self.leaf_count == 0:
            raise ValueError("a UnixFS file has at least one leaf (the empty file has an empty one)")
        level = 0
        while True:
            if level == len(self._levels) - 1 and len(self._levels[level]) == 1:
                return self._levels[level][0]
            self._add(level + 1, self._flush(level))
            level += 1
