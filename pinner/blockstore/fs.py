"""The embedded block store: each file stored once as itself (a filestore), other blocks in a keyed folder.

Layout under ``root``: ``files/<sha256>`` (file bytes, shared by identical files), ``index/<mh>.json``
(leaf slices + interior nodes per file root), ``blocks/<xx>/<mh>`` (loose blocks: CAR imports, small
objects), ``dags/<mh>`` (roots of imported DAGs), ``quarantine/`` and ``tmp/``. Every block leaving
the store is re-hashed against its CID; one that fails is quarantined, logged and never served.
Safe to call from several threads: the maps (``state.StoreState``) are guarded by one lock, reads run
outside it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import BinaryIO

from multiformats import CID

from pinner.blockstore import transfer
from pinner.blockstore.config import FsBlockstoreConfig
from pinner.blockstore.index import FileIndex
from pinner.blockstore.state import LeafLoc, StoreState
from pinner.blockstore.writer import FileWriter, check_expected, ingest_chunks
from pinner.cids import (
    RAW,
    block_key,
    check_supported,
    cid_from_bytes,
    cid_str,
    parse_cid,
    split_cid,
    verify_block,
)
from pinner.content_errors import BlockNotFound
from pinner.unixfs import reader
from pinner.unixfs.format import leaf_envelope
from pinner.unixfs.hashing import FileDigest
from pinner.unixfs.params import UnixfsParams
from pinner.unixfs.pipeline import LeafRecord


def _as_bytes(cid: CID | bytes | str) -> bytes:
    if isinstance(cid, str):
        return bytes(parse_cid(cid))
    if isinstance(cid, CID):
        check_supported(cid)
    return bytes(cid)


class FsBlockstore:
    """Filestore-style block store in a folder; see the module docstring for the layout."""

    def __init__(self, root: Path, config: FsBlockstoreConfig | None = None) -> None:
        self.root = Path(root)
        self.config = config or FsBlockstoreConfig()
        self._state = StoreState(self.root, fsync=self.config.fsync)

    # -- blocks --------------------------------------------------------------------------------
    def has(self, cid: CID | bytes | str) -> bool:
        return self._state.has(_as_bytes(cid))

    def get_block(self, cid: CID | bytes | str) -> bytes:
        """The block's bytes, re-hashed against ``cid``; CorruptBlock (quarantined) when they do not match."""
        return self._state.get_block(_as_bytes(cid))

    def put_block(self, cid: CID | bytes | str, data: bytes) -> None:
        """Stores a loose block after checking it hashes to ``cid`` (InvalidBlock otherwise)."""
        raw = _as_bytes(cid)
        verify_block(raw, data)
        if self._state.has(raw):
            return
        self._state.publish_blocks([(block_key(raw), self._state.write_tmp(data))])

    def block_size(self, cid: CID | bytes | str) -> int:
        return self._state.block_size(_as_bytes(cid))

    # -- files ---------------------------------------------------------------------------------
    def begin_file(self, params: UnixfsParams | None = None) -> FileWriter:
        """Starts ingesting one file (``config.default_params`` unless ``params`` is given); see FileWriter."""
        return FileWriter(
            self._state,
            self._state.tmp_dir,
            params or self.config.default_params,
            self.config.pipeline,
            self.config.fsync,
        )

    def ingest_file(
        self,
        source: Path | BinaryIO,
        params: UnixfsParams | None = None,
        expected_cid: CID | str | None = None,
        expected_sha256: bytes | str | None = None,
    ) -> FileDigest:
        """Synchronous ingest of a local file or stream (same checks as ``ingest_async``)."""
        writer = self.begin_file(params)
        with writer:
            if isinstance(source, Path):
                with source.open("rb", buffering=0) as f:
                    writer.write_from(f)
            else:
                writer.write_from(source)
            digest = writer.finish()
            check_expected(digest, expected_cid, expected_sha256)
            return writer.commit()

    async def ingest_async(
        self,
        chunks: AsyncIterable[bytes],
        params: UnixfsParams | None = None,
        expected_cid: CID | str | None = None,
        expected_sha256: bytes | str | None = None,
    ) -> FileDigest:
        """Ingests an async byte stream off the event loop; commits only if the expectations hold.

        Raises DigestMismatch naming both values (nothing is left behind) when they do not.
        """
        writer = await asyncio.to_thread(self.begin_file, params)
        return await ingest_chunks(
            writer, chunks, self.config.ingest_flush_bytes, expected_cid, expected_sha256
        )

    def _file(self, root: CID | bytes | str) -> tuple[bytes, FileIndex | None]:
        raw = _as_bytes(root)
        return raw, self._state.file_index(raw)

    def stat_file(self, root: CID | bytes | str) -> FileDigest:
        """CID, sha256 and size of a file stored by ingest (BlockNotFound for other roots)."""
        raw, idx = self._file(root)
        if idx is None:
            raise BlockNotFound(f"no file with root {cid_str(raw)} is stored here", cid=cid_str(raw))
        return FileDigest(cid_from_bytes(raw), idx.sha256, idx.size)

    def file_path(self, root: CID | bytes | str) -> Path:
        """The stored file itself (for zero-copy mapping; verify before trusting, e.g. by sha256)."""
        raw, idx = self._file(root)
        if idx is None:
            raise BlockNotFound(f"no file with root {cid_str(raw)} is stored here", cid=cid_str(raw))
        return self._state.files_dir / idx.data_name

    def file_size(self, root: CID | bytes | str) -> int:
        raw, idx = self._file(root)
        return idx.size if idx is not None else reader.file_size(raw, self.get_block)

    def iter_file_bytes(
        self, root: CID | bytes | str, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """The file's bytes in ``[start, end)``, every leaf verified before any of it is yielded."""
        raw, idx = self._file(root)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range {start}..{end}")
        if idx is None:
            self.get_block(raw)  # fail fast (404) before a caller starts streaming
            return reader.iter_file_range(raw, self.get_block, start, end)
        return self._iter_filestore(idx, start, min(end, idx.size) if end is not None else idx.size)

    def _iter_filestore(self, idx: FileIndex, start: int, end: int) -> Iterator[bytes]:
        leaves = idx.leaves
        lo, hi = 0, len(leaves)
        while lo < hi:  # first leaf ending after ``start``
            mid = (lo + hi) // 2
            if leaves[mid].offset + leaves[mid].length <= start:
                lo = mid + 1
            else:
                hi = mid
        try:
            fd = os.open(self._state.files_dir / idx.data_name, os.O_RDONLY)
        except FileNotFoundError:
            raise BlockNotFound(
                f"file {cid_str(idx.root)} is no longer stored", cid=cid_str(idx.root)
            ) from None
        try:
            for leaf in leaves[lo:]:
                if leaf.offset >= end:
                    break
                yield self._leaf_payload(idx.data_name, leaf, fd)[
                    max(start - leaf.offset, 0) : end - leaf.offset
                ]
        finally:
            os.close(fd)

    def _leaf_payload(self, data_name: str, leaf: LeafRecord, fd: int) -> bytes:
        raw = split_cid(leaf.cid_bytes)[1] == RAW
        data = self._state.read_leaf(leaf.cid_bytes, LeafLoc(data_name, leaf.offset, leaf.length, raw), fd)
        if raw:
            return data
        prefix, _suffix = leaf_envelope(leaf.length)
        return data[len(prefix) : len(prefix) + leaf.length]

    # -- DAGs, CARs and deletion (the CAR logic lives in transfer.py) ---------------------------
    def iter_dag_blocks(self, root: CID | bytes | str) -> Iterator[tuple[CID, bytes]]:
        """Every block under ``root`` once (verified), for CAR export."""
        raw = _as_bytes(root)
        self._state.get_block(raw)
        return ((cid_from_bytes(c), data) for c, data in reader.iter_dag(raw, self._state.get_block))

    def export_car(self, root: CID | bytes | str) -> Iterator[bytes]:
        """A CARv1 of the DAG under ``root`` (BlockNotFound raised now, before any byte is produced)."""
        return transfer.export_car(self._state, _as_bytes(root))

    def import_car(self, stream: BinaryIO) -> list[CID]:
        """Imports a CAR atomically: every block verified and each root's DAG complete, or nothing stored."""
        return transfer.import_car(self._state, stream, self.config.car_limits)

    async def import_car_async(self, chunks: AsyncIterable[bytes]) -> list[CID]:
        """``import_car`` for an async byte stream (e.g. a request body): spooled to a temp file, then
        imported in a thread, so memory stays flat and the same atomicity holds."""
        return await transfer.import_car_async(self._state, chunks, self.config.car_limits)

    def delete_file(self, root: CID | bytes | str) -> None:
        """Forgets a file or imported DAG root; bytes still needed by another live root are kept."""
        self._state.delete_root(_as_bytes(root))

    def roots(self) -> list[CID]:
        """Live roots: ingested files and imported DAGs."""
        return self._state.roots()
