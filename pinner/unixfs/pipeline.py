"""One pass over a byte stream: fixed-size chunks hashed on a thread pool, the whole-file sha256 in
its own thread, the balanced tree built as leaf hashes come back in order.

hashlib releases the GIL on large buffers, so with two cores the chunk hashes and the file sha256 run
side by side while the calling thread reads (and, for the blockstore, writes) the next batch. Memory
is bounded by ``max_in_flight + 1`` batch buffers, whatever the file size.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from pinner.cids import DAG_PB, RAW, cid_bytes_v0, cid_bytes_v1, cid_from_bytes
from pinner.unixfs.format import leaf_envelope
from pinner.unixfs.layout import BalancedTree, DagLink
from pinner.unixfs.params import UnixfsParams

if TYPE_CHECKING:  # multiformats costs ~50 ms to import: only where a CID object is built
    from multiformats import CID

ByteSink = Callable[[memoryview], None]


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Tuning of the hashing pipeline (defaults measured on 2 cores; see bench/bench_ingest.py)."""

    batch_bytes: int = 4 * 1024 * 1024
    max_in_flight: int = 3
    workers: int = 2

    def __post_init__(self) -> None:
        if self.batch_bytes < 1 or self.max_in_flight < 1 or self.workers < 1:
            raise ValueError(f"pipeline settings must be positive: {self}")


class LeafRecord(NamedTuple):
    """Where a leaf's bytes sit in the file."""

    cid_bytes: bytes
    offset: int
    length: int


class RootDigest(NamedTuple):
    """What ``finish_root`` returns: the root as a binary CID (no CID object built) and the digests."""

    cid_bytes: bytes
    tsize: int
    size: int
    sha256: bytes | None


@dataclass(slots=True)
class BuildResult:
    """The outcome of one pass: root CID, size, optional sha256, leaf index and interior nodes."""

    root: CID
    root_tsize: int
    size: int
    sha256: bytes | None
    leaves: list[LeafRecord] | None
    nodes: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    buf: bytearray
    offset: int
    chunk_jobs: list[Future[list[tuple[bytes, int, int]]]]
    sha_job: Future[None] | None
    sink_job: Future[None] | None = None


def _hash_chunks(view: memoryview, starts: range, chunk: int, raw: bool) -> list[tuple[bytes, int, int]]:
    """(sha256, data length, block size) of each leaf starting at ``starts``.

    dag-pb leaves are hashed through their envelope, so the chunk is never copied.
    """
    out: list[tuple[bytes, int, int]] = []
    envelopes: dict[int, tuple[bytes, bytes]] = {}
    total = len(view)
    for start in starts:
        piece = view[start : min(start + chunk, total)]
        n = len(piece)
        if raw:
            out.append((hashlib.sha256(piece).digest(), n, n))
            continue
        env = envelopes.get(n)
        if env is None:
            env = envelopes[n] = leaf_envelope(n)
        h = hashlib.sha256(env[0])
        h.update(piece)
        h.update(env[1])
        out.append((h.digest(), n, n + len(env[0]) + len(env[1])))
    return out


class ChunkPipeline:
    """Feeds bytes through the chunker; ``finish()`` returns the DAG root and digests."""

    def __init__(
        self,
        params: UnixfsParams,
        *,
        file_sha256: bool = True,
        record_leaves: bool = False,
        sink: ByteSink | None = None,
        config: PipelineConfig | None = None,
    ) -> None:
        self._params = params
        self._config = config or PipelineConfig()
        chunk = params.chunk_size
        self._batch_size = max(1, self._config.batch_bytes // chunk) * chunk
        self._sink = sink
        self._sha = hashlib.sha256() if file_sha256 else None
        self._leaves: list[LeafRecord] | None = [] if record_leaves else None
        self._nodes: list[tuple[bytes, bytes]] = []
        self._tree = BalancedTree(params, on_node=lambda cid, block: self._nodes.append((cid, block)))
        self._free: list[bytearray] = []
        self._allocated = 0
        self._cur: bytearray | None = None
        self._fill = 0
        self._offset = 0
        self._pending: deque[_Batch] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._sha_pool: ThreadPoolExecutor | None = None
        self._sink_pool: ThreadPoolExecutor | None = None
        self._done = False

    # -- input ---------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Appends bytes (any size); full batches are handed to the workers."""
        mv = memoryview(data).cast("B")
        while len(mv):
            cur = self._current()
            n = min(len(mv), self._batch_size - self._fill)
            cur[self._fill : self._fill + n] = mv[:n]
            self._fill += n
            mv = mv[n:]
            if self._fill == self._batch_size:
                self._submit()

    def read_from(self, source: BinaryIO) -> None:
        """Reads ``source`` to its end straight into the batch buffers (no extra copy)."""
        readinto = getattr(source, "readinto", None)
        while True:
            cur = self._current()
            if readinto is not None:
                n = readinto(memoryview(cur)[self._fill :])
            else:
                data = source.read(self._batch_size - self._fill)
                n = len(data)
                cur[self._fill : self._fill + n] = data
            if not n:
                return
            self._fill += n
            if self._fill == self._batch_size:
                self._submit()

    # -- output --------------------------------------------------------------------------------
    def finish(self) -> BuildResult:
        """Hashes what is left, builds the root and returns everything; the pipeline is then closed."""
        root = self.finish_root()
        return BuildResult(
            root=cid_from_bytes(root.cid_bytes),
            root_tsize=root.tsize,
            size=root.size,
            sha256=root.sha256,
            leaves=self._leaves,
            nodes=self._nodes,
        )

    def finish_root(self) -> RootDigest:
        """``finish()`` without building a CID object (``cid_str`` spells the binary CID); the leaves
        and interior nodes are not returned. The pipeline is then closed."""
        if self._done:
            raise RuntimeError("pipeline already finished")
        try:
            if self._fill:
                self._submit(final=True)
            while self._pending:
                self._drain_one()
            if self._tree.leaf_count == 0:
                self._add_leaves(0, _hash_chunks(memoryview(b""), range(1), 1, self._params.leaves_raw))
            root = self._tree.finish()
            sha256 = self._sha.digest() if self._sha is not None else None
            return RootDigest(root.cid_bytes, root.tsize, self._offset, sha256)
        finally:
            self.close()

    def close(self) -> None:
        """Stops the worker threads (idempotent; used on abort)."""
        self._done = True
        for pool in (self._pool, self._sha_pool, self._sink_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._sha_pool = self._sink_pool = None

    # -- internals -----------------------------------------------------------------------------
    def _current(self) -> bytearray:
        if self._done:
            raise RuntimeError("pipeline already finished")
        if self._cur is None:
            if not self._free and self._allocated > self._config.max_in_flight:
                self._drain_one()
            if self._free:
                self._cur = self._free.pop()
            else:
                self._cur = bytearray(self._batch_size)
                self._allocated += 1
            self._fill = 0
        return self._cur

    def _submit(self, final: bool = False) -> None:
        assert self._cur is not None
        buf, n = self._cur, self._fill
        self._cur, self._fill = None, 0
        view = memoryview(buf)[:n]
        chunk, raw = self._params.chunk_size, self._params.leaves_raw
        starts = range(0, n, chunk)
        if final and self._pool is None:
            # The whole input fit in one batch: hash it here, no threads to start for a small file.
            if self._sink is not None:
                self._sink(view)
            if self._sha is not None:
                self._sha.update(view)
            self._add_leaves(self._offset, _hash_chunks(view, starts, chunk, raw))
            self._offset += n
            self._free.append(buf)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._config.workers, thread_name_prefix="unixfs-chunks")
            if self._sha is not None:
                self._sha_pool = ThreadPoolExecutor(1, thread_name_prefix="unixfs-sha256")
        sha_job = None
        if self._sha is not None and self._sha_pool is not None:
            sha_job = self._sha_pool.submit(self._sha.update, view)
        # Without a file sha256 to compute, split the batch so every worker has chunks to hash.
        parts = 1 if sha_job is not None else self._config.workers
        step = max(1, -(-len(starts) // parts))
        jobs = [
            self._pool.submit(_hash_chunks, view, starts[i : i + step], chunk, raw)
            for i in range(0, len(starts), step)
        ]
        sink_job = None
        if self._sink is not None:
            # Its own thread, in order: a write stalled by disk writeback does not stop reading or hashing.
            if self._sink_pool is None:
                self._sink_pool = ThreadPoolExecutor(1, thread_name_prefix="unixfs-sink")
            sink_job = self._sink_pool.submit(self._sink, view)
        self._pending.append(_Batch(buf, self._offset, jobs, sha_job, sink_job))
        self._offset += n

    def _drain_one(self) -> None:
        batch = self._pending.popleft()
        offset = batch.offset
        for job in batch.chunk_jobs:
            offset = self._add_leaves(offset, job.result())
        if batch.sha_job is not None:
            batch.sha_job.result()
        if batch.sink_job is not None:
            batch.sink_job.result()
        self._free.append(batch.buf)

    def _add_leaves(self, offset: int, hashed: list[tuple[bytes, int, int]]) -> int:
        params = self._params
        for digest, length, tsize in hashed:
            if params.leaves_raw:
                cid = cid_bytes_v1(RAW, digest)
            elif params.cid_version == 0:
                cid = cid_bytes_v0(digest)
            else:
                cid = cid_bytes_v1(DAG_PB, digest)
            self._tree.add_leaf(DagLink(cid, tsize, length))
            if self._leaves is not None:
                self._leaves.append(LeafRecord(cid, offset, length))
            offset += length
        return offset
