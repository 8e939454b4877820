"""A flat UnixFS directory node (no HAMT), so a folder of files gets one CID as ``ipfs add -r`` gives."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pinner.cids import cid_from_bytes
from pinner.content_errors import DirectoryTooLarge
from pinner.dagpb import PBLink, encode_node
from pinner.unixfs.format import DIRECTORY, encode_data
from pinner.unixfs.layout import node_cid_bytes
from pinner.unixfs.params import UnixfsParams
from pinner.unixfs.pipeline import ChunkPipeline

if TYPE_CHECKING:  # multiformats costs ~50 ms to import: only where a CID object is built
    from multiformats import CID

DEFAULT_DIRECTORY_MAX_ENTRIES = 10_000
HAMT_SHARDING_SIZE = 262144
"""Kubo switches a directory to a HAMT once its estimated links size reaches this many bytes."""


def build_directory(
    entries: list[tuple[str, CID, int]],
    params: UnixfsParams | None = None,
    *,
    max_entries: int = DEFAULT_DIRECTORY_MAX_ENTRIES,
) -> tuple[CID, bytes]:
    """Directory node over ``(name, cid, tsize)`` entries; returns (CID, block bytes).

    ``tsize`` is the child's cumulative DAG size (the size ``ipfs add`` records). Links are sorted by
    the UTF-8 bytes of their names. Raises DirectoryTooLarge where Kubo would shard (HAMT), ValueError
    for empty, duplicate or path-like names.
    """
    params = params or UnixfsParams()
    if len(entries) > max_entries:
        raise DirectoryTooLarge(
            f"directory has {len(entries)} entries, over the limit of {max_entries}; HAMT sharding is "
            "not supported",
            entries=len(entries),
            limit=max_entries,
        )
    seen: set[bytes] = set()
    estimated = 0
    for name, cid, _tsize in entries:
        raw = name.encode("utf-8")
        if not raw or "/" in name or name in (".", "..") or "\x00" in name:
            raise ValueError(f"invalid directory entry name {name!r}")
        if raw in seen:
            raise ValueError(f"duplicate directory entry name {name!r}")
        seen.add(raw)
        estimated += len(raw) + len(bytes(cid))
    if estimated >= HAMT_SHARDING_SIZE:
        raise DirectoryTooLarge(
            f"directory links take about {estimated} bytes, at or over Kubo's HAMT threshold of "
            f"{HAMT_SHARDING_SIZE}; HAMT sharding is not supported",
            estimated_size=estimated,
        )
    ordered = sorted(entries, key=lambda e: e[0].encode("utf-8"))
    block = encode_node(
        [PBLink(bytes(cid), name, tsize) for name, cid, tsize in ordered], encode_data(DIRECTORY)
    )
    return cid_from_bytes(node_cid_bytes(params, block)), block


def hash_directory(
    path: Path, params: UnixfsParams | None = None, *, max_entries: int = DEFAULT_DIRECTORY_MAX_ENTRIES
) -> tuple[CID, int]:
    """(CID, cumulative DAG size) of a folder as ``ipfs add -r --only-hash`` computes it.

    Subfolders become directory nodes; symlinks and special files are refused (ValueError).
    """
    params = params or UnixfsParams()
    entries: list[tuple[str, CID, int]] = []
    for child in sorted(path.iterdir()):
        if child.is_symlink() or not (child.is_file() or child.is_dir()):
            raise ValueError(f"{child} is not a regular file or folder; only those can be hashed")
        if child.is_dir():
            cid, tsize = hash_directory(child, params, max_entries=max_entries)
        else:
            pipeline = ChunkPipeline(params, file_sha256=False)
            with child.open("rb", buffering=0) as f:
                pipeline.read_from(f)
            result = pipeline.finish()
            cid, tsize = result.root, result.root_tsize
        entries.append((child.name, cid, tsize))
    cid, block = build_directory(entries, params, max_entries=max_entries)
    return cid, len(block) + sum(t for _n, _c, t in entries)
