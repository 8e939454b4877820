"""Walking a stored UnixFS DAG through a verified ``get_block``: every block for CAR export, and a
file's bytes (or a byte range) for the gateway, skipping subtrees outside the range by blocksizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pinner.cids import DAG_PB, RAW, block_key, cid_str, split_cid
from pinner.content_errors import UnsupportedDag
from pinner.dagpb import DagPbError, decode_node
from pinner.unixfs.format import FILE, RAW_TYPE, decode_data

GetBlock = Callable[[bytes], bytes]
"""Returns the verified block for a binary CID (raises if missing or corrupt)."""


def iter_dag(root: bytes, get_block: GetBlock) -> Iterator[tuple[bytes, bytes]]:
    """Every block of the DAG under ``root`` once, depth-first pre-order (the order ``dag export`` uses)."""
    seen: set[bytes] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        key = block_key(cid)
        if key in seen:
            continue
        seen.add(key)
        data = get_block(cid)
        yield cid, data
        _version, codec, _mh = split_cid(cid)
        if codec == DAG_PB:
            try:
                node = decode_node(data)
            except DagPbError as e:
                raise UnsupportedDag(
                    f"block {cid_str(cid)} is not valid dag-pb: {e}", cid=cid_str(cid)
                ) from e
            stack.extend(link.cid_bytes for link in reversed(node.links))
        elif codec != RAW:
            raise UnsupportedDag(
                f"block {cid_str(cid)} has codec {codec:#x}; cannot walk it", cid=cid_str(cid)
            )


def _file_node(cid: bytes, data: bytes) -> tuple[bytes, list[tuple[bytes, int]]]:
    """(inline payload, [(child cid, child file size)]) of a UnixFS file node."""
    try:
        node = decode_node(data)
        fs = decode_data(node.data or b"")
    except DagPbError as e:
        raise UnsupportedDag(f"block {cid_str(cid)} is not a UnixFS file node: {e}", cid=cid_str(cid)) from e
    if fs.type not in (FILE, RAW_TYPE):
        raise UnsupportedDag(f"{cid_str(cid)} is UnixFS type {fs.type}, not a file", cid=cid_str(cid))
    if len(fs.blocksizes) != len(node.links):
        raise UnsupportedDag(
            f"{cid_str(cid)} has {len(node.links)} links but {len(fs.blocksizes)} blocksizes"
        )
    return fs.data or b"", [
        (link.cid_bytes, size) for link, size in zip(node.links, fs.blocksizes, strict=True)
    ]


def file_size(root: bytes, get_block: GetBlock) -> int:
    """The file size recorded in (or implied by) the root block."""
    data = get_block(root)
    if split_cid(root)[1] == RAW:
        return len(data)
    payload, children = _file_node(root, data)
    return len(payload) + sum(size for _cid, size in children)


def iter_file_range(
    root: bytes, get_block: GetBlock, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """The file's bytes in ``[start, end)`` (``end`` None = to the end), reading only blocks that overlap."""
    if end is None:
        end = file_size(root, get_block)
    if start >= end:
        return
    yield from _walk(root, 0, start, end, get_block)


def _walk(cid: bytes, pos: int, start: int, end: int, get_block: GetBlock) -> Iterator[bytes]:
    data = get_block(cid)
    if split_cid(cid)[1] == RAW:
        piece = data[max(start - pos, 0) : end - pos]
        if piece:
            yield piece
        return
    payload, children = _file_node(cid, data)
    if payload:
        piece = payload[max(start - pos, 0) : end - pos]
        if piece:
            yield piece
    pos += len(payload)
    for child, size in children:
        if pos >= end:
            return
        if pos + size > start:
            yield from _walk(child, pos, start, end, get_block)
        pos += size
