"""Ingest of one file into the filestore: one sequential write of the bytes while they are hashed.

Nothing is visible in the store until ``commit()``: the data and its index are written to temp files,
synced once in ``finish()``, and renamed into place under the store's lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import uuid
from collections.abc import AsyncIterable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol

from multiformats import CID

from pinner.blockstore.index import FileIndex
from pinner.cids import cid_from_bytes, cid_str, parse_cid
from pinner.content_errors import DigestMismatch
from pinner.unixfs.hashing import FileDigest
from pinner.unixfs.params import UnixfsParams
from pinner.unixfs.pipeline import ChunkPipeline, PipelineConfig

_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range's dirty pages, do not wait


def _sync_file_range() -> Any:
    """Linux's sync_file_range(2) through libc, or None where there is none (then the fsync does it all)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_WRITEBACK = _sync_file_range()


class FileCommitter(Protocol):
    """What a FileWriter needs from its store: one atomic step that makes a finished file visible."""

    def commit_file(self, index: FileIndex, data_tmp: Path, index_tmp: Path) -> None:
        """Moves the synced data and index temp files into place and records ``index``."""
        ...


class FileWriter:
    """``write()`` bytes as they arrive, ``finish()`` for the digest, then ``commit()`` or ``abort()``.

    ``tmp_dir`` must be on the committer's file system, so that committing is a rename.
    """

    def __init__(
        self,
        committer: FileCommitter,
        tmp_dir: Path,
        params: UnixfsParams,
        config: PipelineConfig,
        fsync: bool,
    ) -> None:
        self._committer = committer
        self._params = params
        self._fsync = fsync
        name = uuid.uuid4().hex
        self.data_tmp = tmp_dir / f"{name}.data"
        self.index_tmp = tmp_dir / f"{name}.index"
        self._fd: int | None = os.open(self.data_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._pipeline = ChunkPipeline(
            params, file_sha256=True, record_leaves=True, sink=self._write_out, config=config
        )
        self.index: FileIndex | None = None
        self._state = "open"
        self._written = 0

    def _write_out(self, view: memoryview) -> None:
        assert self._fd is not None
        start, length = self._written, len(view)
        while len(view):
            n = os.write(self._fd, view)
            view = view[n:]
        self._written += length
        if self._fsync and _WRITEBACK is not None:
            # Start writing this batch to disk now, while the next ones are read and hashed: the fsync in
            # finish() then waits for the tail only, not for the whole file written back after the hashing.
            _WRITEBACK(self._fd, start, length, _SYNC_FILE_RANGE_WRITE)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Appends bytes to the file being ingested; hashing happens as they arrive."""
        if self._state != "open":
            raise RuntimeError(f"cannot write to a writer that is {self._state}")
        self._pipeline.write(data)

    def write_from(self, source: BinaryIO) -> None:
        """Reads ``source`` to its end straight into the hashing buffers (one copy less than ``write``)."""
        if self._state != "open":
            raise RuntimeError(f"cannot write to a writer that is {self._state}")
        self._pipeline.read_from(source)

    def finish(self) -> FileDigest:
        """Completes hashing and syncs the data and index to temp files; nothing is visible yet."""
        if self._state != "open":
            raise RuntimeError(f"cannot finish a writer that is {self._state}")
        try:
            result = self._pipeline.finish()
            assert self._fd is not None and result.sha256 is not None and result.leaves is not None
            if self._fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self.index = FileIndex(
                root=bytes(result.root),
                root_tsize=result.root_tsize,
                sha256=result.sha256,
                size=result.size,
                params=self._params,
                leaves=tuple(result.leaves),
                nodes=tuple(result.nodes),
            )
            fd = os.open(self.index_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                payload = memoryview(self.index.to_json())
                while len(payload):
                    payload = payload[os.write(fd, payload) :]
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            self.abort()
            raise
        self._state = "finished"
        return FileDigest(result.root, result.sha256, result.size)

    def commit(self) -> FileDigest:
        """Makes the file visible atomically (identical content already stored is reused)."""
        if self._state == "open":
            self.finish()
        if self._state != "finished" or self.index is None:
            raise RuntimeError(f"cannot commit a writer that is {self._state}")
        self._committer.commit_file(self.index, self.data_tmp, self.index_tmp)
        self._state = "committed"
        return FileDigest(cid_from_bytes(self.index.root), self.index.sha256, self.index.size)

    def abort(self) -> None:
        """Drops everything written so far (idempotent; no-op after commit)."""
        if self._state == "committed":
            return
        self._pipeline.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for path in (self.data_tmp, self.index_tmp):
            path.unlink(missing_ok=True)
        self._state = "aborted"

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state != "committed":
            self.abort()


def check_expected(
    digest: FileDigest, expected_cid: CID | str | bytes | None, expected_sha256: bytes | str | None
) -> None:
    """Raises DigestMismatch naming both values when the ingested content is not what was promised."""
    if expected_cid is not None:
        want = parse_cid(expected_cid) if isinstance(expected_cid, str | bytes) else expected_cid
        if bytes(want) != bytes(digest.cid):
            raise DigestMismatch(
                f"content has CID {cid_str(digest.cid)}, expected {cid_str(want)}",
                expected=cid_str(want),
                actual=cid_str(digest.cid),
            )
    if expected_sha256 is not None:
        want_hex = expected_sha256.hex() if isinstance(expected_sha256, bytes) else expected_sha256.lower()
        if want_hex != digest.sha256.hex():
            raise DigestMismatch(
                f"content has sha256 {digest.sha256.hex()}, expected {want_hex}",
                expected=want_hex,
                actual=digest.sha256.hex(),
            )


async def ingest_chunks(
    writer: FileWriter,
    chunks: AsyncIterable[bytes],
    flush_bytes: int,
    expected_cid: CID | str | None,
    expected_sha256: bytes | str | None,
) -> FileDigest:
    """Feeds an async stream to ``writer`` off the event loop (batched per ``flush_bytes``), then commits
    only if the expectations hold; on any failure the writer is aborted and nothing is left behind."""
    try:
        pending: list[bytes] = []
        size = 0
        async for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size >= flush_bytes:
                await asyncio.to_thread(_write_all, writer, pending)
                pending, size = [], 0
        await asyncio.to_thread(_write_all, writer, pending)
        digest = await asyncio.to_thread(writer.finish)
        check_expected(digest, expected_cid, expected_sha256)
        return await asyncio.to_thread(writer.commit)
    except BaseException:
        await asyncio.to_thread(writer.abort)
        raise


def _write_all(writer: FileWriter, chunks: list[bytes]) -> None:
    for chunk in chunks:
        writer.write(chunk)
