"""The embedded block store: each file stored once as itself (a filestore), other blocks in a keyed folder.

Layout under ``root``: ``files/<sha256>`` (file bytes, shared by identical files), ``index/<mh>.json``
(leaf slices + interior nodes per file root), ``blocks/<xx>/<mh>`` (loose blocks: CAR imports, small
objects), ``dags/<mh>`` (roots of imported DAGs), ``quarantine/`` and ``tmp/``. Every block leaving
the store is re-hashed against its CID; one that fails is quarantined, logged and never served.
Safe to call from several threads: the maps are guarded by one lock, reads run outside it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from multiformats import CID

from pinner.blockstore import transfer
from pinner.blockstore.config import FsBlockstoreConfig, fsync_dir
from pinner.blockstore.index import FileIndex
from pinner.blockstore.writer import FileWriter, check_expected, ingest_chunks
from pinner.content_errors import BlockNotFound, CorruptBlock
from pinner.digests import (
    RAW,
    block_key,
    block_matches,
    check_supported,
    cid_from_bytes,
    cid_str,
    parse_cid,
    split_cid,
    verify_block,
)
from pinner.unixfs import reader
from pinner.unixfs.format import leaf_envelope
from pinner.unixfs.hashing import FileDigest
from pinner.unixfs.params import UnixfsParams
from pinner.unixfs.pipeline import LeafRecord

log = logging.getLogger("pinner.blockstore")


@dataclass(frozen=True, slots=True)
class _LeafLoc:
    data_name: str
    offset: int
    length: int
    raw: bool


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
        self._files_dir = self.root / "files"
        self._index_dir = self.root / "index"
        self._blocks_dir = self.root / "blocks"
        self._dags_dir = self.root / "dags"
        self._quarantine_dir = self.root / "quarantine"
        self._tmp_dir = self.root / "tmp"
        for d in (self._files_dir, self._index_dir, self._blocks_dir, self._dags_dir, self._quarantine_dir):
            d.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._tmp_dir, ignore_errors=True)  # abandoned ingests and imports
        self._tmp_dir.mkdir()
        self._lock = threading.RLock()
        self._files: dict[bytes, FileIndex] = {}
        self._leaves: dict[bytes, _LeafLoc] = {}
        self._nodes: dict[bytes, bytes] = {}
        self._dag_roots: dict[bytes, bytes] = {}
        self._load()

    # -- startup -------------------------------------------------------------------------------
    def _load(self) -> None:
        for path in sorted(self._index_dir.glob("*.json")):
            try:
                idx = FileIndex.from_json(path.read_bytes())
                data = self._files_dir / idx.data_name
                if data.stat().st_size != idx.size:
                    raise ValueError(f"data file {data.name} is not {idx.size} bytes")
                for cid, block in idx.nodes:
                    verify_block(cid, block)
            except Exception as e:
                log.error("quarantining unreadable file index %s: %s", path.name, e)
                self._move_to_quarantine(path)
                continue
            self._files[block_key(idx.root)] = idx
        for path in self._dags_dir.iterdir():
            cid = path.read_bytes()
            self._dag_roots[block_key(cid)] = cid
        self._rebuild_maps()

    def _rebuild_maps(self) -> None:
        leaves: dict[bytes, _LeafLoc] = {}
        nodes: dict[bytes, bytes] = {}
        for idx in self._files.values():
            for leaf in idx.leaves:
                raw = split_cid(leaf.cid_bytes)[1] == RAW
                leaves.setdefault(
                    block_key(leaf.cid_bytes), _LeafLoc(idx.data_name, leaf.offset, leaf.length, raw)
                )
            for cid, block in idx.nodes:
                nodes[block_key(cid)] = block
        self._leaves, self._nodes = leaves, nodes

    # -- paths and helpers ---------------------------------------------------------------------
    @staticmethod
    def _cid(raw: bytes) -> CID:
        return cid_from_bytes(raw)

    def _block_path(self, key: bytes) -> Path:
        name = key.hex()
        return self._blocks_dir / name[-3:-1] / name

    def _move_to_quarantine(self, path: Path) -> None:
        target = self._quarantine_dir / f"{path.name}.{time.time_ns()}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            pass

    def _quarantine_data(self, data_name: str, cid: bytes, why: str) -> None:
        if not data_name or "/" in data_name:
            raise ValueError(f"refusing to quarantine data file named {data_name!r}")
        with self._lock:
            log.error(
                "block %s failed verification (%s); quarantining data file %s", cid_str(cid), why, data_name
            )
            self._move_to_quarantine(self._files_dir / data_name)
            for key, idx in list(self._files.items()):
                if idx.data_name == data_name:
                    self._move_to_quarantine(self._index_dir / f"{key.hex()}.json")
                    del self._files[key]
            self._rebuild_maps()

    # -- blocks --------------------------------------------------------------------------------
    def has(self, cid: CID | bytes | str) -> bool:
        key = block_key(_as_bytes(cid))
        with self._lock:
            if key in self._nodes or key in self._leaves:
                return True
        return self._block_path(key).exists()

    def get_block(self, cid: CID | bytes | str) -> bytes:
        """The block's bytes, re-hashed against ``cid``; CorruptBlock (quarantined) when they do not match."""
        raw = _as_bytes(cid)
        key = block_key(raw)
        with self._lock:
            node = self._nodes.get(key)
            loc = self._leaves.get(key)
        if node is not None:
            if not block_matches(raw, node):
                raise CorruptBlock(f"interior node {cid_str(raw)} does not match its CID", cid=cid_str(raw))
            return node
        if loc is not None:
            return self._read_leaf(raw, loc, None)
        path = self._block_path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_str(raw)} is not in this store", cid=cid_str(raw)) from None
        if not block_matches(raw, data):
            log.error("block %s in %s failed verification; quarantining it", cid_str(raw), path)
            self._move_to_quarantine(path)
            raise CorruptBlock(f"stored block {cid_str(raw)} does not match its CID", cid=cid_str(raw))
        return data

    def _read_leaf(self, raw: bytes, loc: _LeafLoc, fd: int | None) -> bytes:
        own = fd is None
        try:
            if fd is None:
                fd = os.open(self._files_dir / loc.data_name, os.O_RDONLY)
            data = os.pread(fd, loc.length, loc.offset)
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_str(raw)} is not in this store", cid=cid_str(raw)) from None
        finally:
            if own and fd is not None:
                os.close(fd)
        complete = len(data) == loc.length
        if not loc.raw:
            prefix, suffix = leaf_envelope(len(data))
            data = prefix + data + suffix
        if not complete or not block_matches(raw, data):
            self._quarantine_data(loc.data_name, raw, "leaf slice does not match")
            raise CorruptBlock(
                f"block {cid_str(raw)} (bytes {loc.offset}..{loc.offset + loc.length} of a stored file) does not "
                "match its CID; the file was quarantined",
                cid=cid_str(raw),
                offset=loc.offset,
            )
        return data

    def put_block(self, cid: CID | bytes | str, data: bytes) -> None:
        """Stores a loose block after checking it hashes to ``cid`` (InvalidBlock otherwise)."""
        raw = _as_bytes(cid)
        verify_block(raw, data)
        if self.has(raw):
            return
        self._publish_blocks([(block_key(raw), self._write_tmp(data))])

    def block_size(self, cid: CID | bytes | str) -> int:
        raw = _as_bytes(cid)
        key = block_key(raw)
        with self._lock:
            node = self._nodes.get(key)
            loc = self._leaves.get(key)
        if node is not None:
            return len(node)
        if loc is not None:
            return (
                loc.length
                if loc.raw
                else len(leaf_envelope(loc.length)[0]) + loc.length + len(leaf_envelope(loc.length)[1])
            )
        try:
            return self._block_path(key).stat().st_size
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_str(raw)} is not in this store", cid=cid_str(raw)) from None

    def _write_tmp(self, data: bytes) -> Path:
        path = self._tmp_dir / f"blk-{threading.get_ident()}-{time.time_ns()}"
        with path.open("wb") as f:
            f.write(data)
            if self.config.fsync:
                f.flush()
                os.fsync(f.fileno())
        return path

    def _publish_blocks(self, staged: list[tuple[bytes, Path]]) -> None:
        dirs: set[Path] = set()
        with self._lock:
            for key, tmp in staged:
                target = self._block_path(key)
                target.parent.mkdir(exist_ok=True)
                os.replace(tmp, target)
                dirs.add(target.parent)
            if self.config.fsync:
                for d in dirs:
                    fsync_dir(d)

    # -- files ---------------------------------------------------------------------------------
    def begin_file(self, params: UnixfsParams | None = None) -> FileWriter:
        """Starts ingesting one file; see FileWriter."""
        return FileWriter(
            self, self._tmp_dir, params or UnixfsParams(), self.config.pipeline, self.config.fsync
        )

    def _commit_file(self, writer: FileWriter) -> None:
        idx = writer.index
        assert idx is not None
        with self._lock:
            data_path = self._files_dir / idx.data_name
            if data_path.exists() and data_path.stat().st_size == idx.size:
                writer.data_tmp.unlink()  # identical bytes are already stored once
            else:
                os.replace(writer.data_tmp, data_path)
            os.replace(writer.index_tmp, self._index_dir / f"{block_key(idx.root).hex()}.json")
            if self.config.fsync:
                fsync_dir(self._files_dir)
                fsync_dir(self._index_dir)
            self._files[block_key(idx.root)] = idx
            self._rebuild_maps()

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
        with self._lock:
            return raw, self._files.get(block_key(raw))

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
        return self._files_dir / idx.data_name

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
            fd = os.open(self._files_dir / idx.data_name, os.O_RDONLY)
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
        data = self._read_leaf(leaf.cid_bytes, _LeafLoc(data_name, leaf.offset, leaf.length, raw), fd)
        if raw:
            return data
        prefix, _suffix = leaf_envelope(leaf.length)
        return data[len(prefix) : len(prefix) + leaf.length]

    # -- DAGs, CARs and deletion (the logic lives in transfer.py) -------------------------------
    def iter_dag_blocks(self, root: CID | bytes | str) -> Iterator[tuple[CID, bytes]]:
        """Every block under ``root`` once (verified), for CAR export."""
        raw = _as_bytes(root)
        self.get_block(raw)
        return ((cid_from_bytes(c), data) for c, data in reader.iter_dag(raw, self.get_block))

    def export_car(self, root: CID | bytes | str) -> Iterator[bytes]:
        """A CARv1 of the DAG under ``root`` (BlockNotFound raised now, before any byte is produced)."""
        return transfer.export_car(self, _as_bytes(root))

    def import_car(self, stream: BinaryIO) -> list[CID]:
        """Imports a CAR atomically: every block verified and each root's DAG complete, or nothing stored."""
        return transfer.import_car(self, stream)

    async def import_car_async(self, chunks: AsyncIterable[bytes]) -> list[CID]:
        """``import_car`` for an async byte stream (e.g. a request body): spooled to a temp file, then
        imported in a thread, so memory stays flat and the same atomicity holds."""
        return await transfer.import_car_async(self, chunks)

    def delete_file(self, root: CID | bytes | str) -> None:
        """Forgets a file or imported DAG root; bytes still needed by another live root are kept."""
        transfer.delete_root(self, _as_bytes(root))

    def roots(self) -> list[CID]:
        """Live roots: ingested files and imported DAGs."""
        with self._lock:
            raws = [idx.root for idx in self._files.values()] + list(self._dag_roots.values())
        return [cid_from_bytes(r) for r in dict.fromkeys(raws)]
