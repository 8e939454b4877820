"""Sending a shard with `add` when the node would rebuild exactly our DAG from the file's bytes.

A CAR keeps our CIDs whatever the node's chunker (the safe default), but on js-ipfs and Kubo `add`
of the plain bytes is cheaper than `dag/import` of the same blocks. When the DAG's shape can be read
off its blocks (balanced layout, raw leaves, a known chunk size) we ask for that exact `add`
*without pinning*, and pin our CID only if the node answered with it: a node that built another DAG
pins nothing, and the caller falls back to the CAR.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from multiformats import CID

from pinner.cids import normalize_cid
from pinner.dagpb import DagPbError, decode_node

DAG_PB = 0x70
RAW = 0x55
DEFAULT_CHUNK = 262144


class AddAnswer(Protocol):
    @property
    def cid(self) -> str: ...


@runtime_checkable
class FileAdder(Protocol):
    """A node with `add` (`pinner.ipfs.kubo.KuboClient`)."""

    @property
    def url(self) -> str: ...

    async def add(
        self,
        body: AsyncIterable[bytes],
        *,
        filename: str = "file",
        cid_version: int = 1,
        raw_leaves: bool | None = None,
        chunker: str | None = None,
        pin: bool = True,
    ) -> AddAnswer: ...


@runtime_checkable
class FileBytes(Protocol):
    """A source that can also stream a file's bytes (verified), e.g. the embedded blockstore."""

    def get_block(self, cid: str) -> bytes: ...

    def iter_file_bytes(self, root: str) -> Iterator[bytes]: ...

    def file_size(self, root: str) -> int: ...


@dataclass(frozen=True)
class AddParams:
    chunk_size: int
    raw_leaves: bool
    cid_version: int

    @property
    def chunker(self) -> str:
        return f"size-{self.chunk_size}"


def add_params(root: str, get_block: Callable[[str], bytes]) -> AddParams | None:
    """The `add` options that rebuild `root`, or None when they cannot be read off its blocks.

    Only CIDv1 files with raw leaves qualify: the chunk size is the first leaf's length (a balanced
    DAG fills every leaf but the last). A single raw block is any file up to one chunk.
    """
    cid = CID.decode(root)
    if cid.version != 1:
        return None
    if cid.codec.code == RAW:
        size = len(get_block(root))
        return AddParams(max(size, DEFAULT_CHUNK), True, 1)
    if cid.codec.code != DAG_PB:
        return None
    current = root
    for _ in range(16):  # a balanced DAG of any real file is far shallower
        try:
            node = decode_node(get_block(current))
        except DagPbError:
            return None
        if not node.links:
            return None  # data inline in a dag-pb leaf: not a raw-leaves DAG
        first = node.links[0].cid
        if first.codec.code == RAW:
            return AddParams(len(get_block(str(first))), True, 1)
        current = str(first)
    return None


async def file_stream(source: FileBytes, root: str, counter: list[int]) -> AsyncIterator[bytes]:
    """The file's bytes, read in a worker thread one verified piece at a time."""
    pieces = source.iter_file_bytes(root)
    while True:
        piece = await asyncio.to_thread(next, pieces, b"")
        if not piece:
            return
        counter[0] += len(piece)
        yield piece


async def add_unpinned(node: FileAdder, source: FileBytes, root: str, params: AddParams) -> tuple[bool, int]:
    """`add` the file without pinning; (whether the node built our CID, bytes sent)."""
    counter = [0]
    answer = await node.add(
        file_stream(source, root, counter),
        filename="shard",
        cid_version=params.cid_version,
        raw_leaves=params.raw_leaves,
        chunker=params.chunker,
        pin=False,
    )
    return normalize_cid(answer.cid) == normalize_cid(root), counter[0]
