"""Reading a pack's shards into private memory, each hashed as it is read; torch-free, so that the sandbox
worker can start the reads before it imports torch (``PackRead``), on the CPU the import leaves idle.

The bytes hashed are the bytes kept: the loader builds the model's parameters as views of these buffers.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import mmap
import os
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_core.errors import PackInvalid
from model_core.manifest import PackLimits
from model_core.packconfig import PackConfig, pack_config
from model_core.preflight import DEFAULT_RUNTIME_OVERHEAD_BYTES, PackPlan, ShardPlan, plan_pack


@dataclass(frozen=True)
class LoaderConfig:
    limits: PackLimits = field(default_factory=PackLimits)
    allowed_roots: tuple[Path, ...] = ()  # symlinked shards may point into these (e.g. the gate's store)
    memory_budget_bytes: int | None = None
    overhead_bytes: int = DEFAULT_RUNTIME_OVERHEAD_BYTES
    read_chunk_bytes: int = 8 * 1024 * 1024
    read_threads: int = 2  # shards are read and hashed in parallel; hashlib and readinto drop the GIL


ShardBuffer = mmap.mmap | bytearray


def _private_buffer(size: int, populate: bool = True) -> ShardBuffer:
    """Anonymous memory for one shard; pre-faulted in one go when ``populate`` (cheaper than a page fault
    per 4 KiB when nothing else runs meanwhile)."""
    if size == 0 or not hasattr(mmap, "MAP_POPULATE"):
        return bytearray(size)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (mmap.MAP_POPULATE if populate else 0)
    return mmap.mmap(-1, size, flags=flags)


def _open_shard(shard: ShardPlan) -> io.FileIO:
    fd = os.open(shard.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    return io.FileIO(fd, "rb", closefd=True)


def read_verified(shard: ShardPlan, chunk: int) -> ShardBuffer:
    """Read the whole shard into private memory, hashing as it goes; the hash must match the manifest.

    A shard of several chunks is read by a second thread while this one hashes what has arrived (both
    release the GIL), so reading, page faults and sha256 overlap; the bytes hashed are the bytes kept.
    """
    name = shard.entry.filename
    pipelined = shard.size >= 2 * chunk
    buf = _private_buffer(shard.size, populate=not pipelined)
    view = memoryview(buf)
    h = hashlib.sha256()
    try:
        got, extra = (_pipelined if pipelined else _sequential)(shard, view, chunk, h)
    finally:
        view.release()
    if got != shard.size or extra:
        raise PackInvalid(f"shard {name!r} changed size while it was being read", shard=name)
    if not hmac.compare_digest(h.hexdigest(), shard.entry.sha256_hex):
        raise PackInvalid(
            f"shard {name!r} sha256 is {h.hexdigest()}, not sha256:{shard.entry.sha256_hex} "
            "as the manifest says (corrupted or tampered)",
            shard=name,
        )
    return buf


def _fill(f: io.FileIO, view: memoryview, size: int, chunk: int) -> Iterator[tuple[int, int]]:
    """Read ``f`` into ``view`` a chunk at a time, up to ``size`` bytes or the end of the file; yields each
    chunk's (start, end)."""
    got = 0
    while got < size:
        n = f.readinto(view[got : got + chunk])
        if not n:
            return
        yield got, got + n
        got += n


def _sequential(shard: ShardPlan, view: memoryview, chunk: int, h: Any) -> tuple[int, bool]:
    with _open_shard(shard) as f:
        got = 0
        for start, got in _fill(f, view, shard.size, chunk):
            h.update(view[start:got])
        return got, bool(f.read(1))


def _pipelined(shard: ShardPlan, view: memoryview, chunk: int, h: Any) -> tuple[int, bool]:
    """The reader thread fills ``view`` ahead (never the part being hashed) and says how far it got:
    ``(upto, None)`` per chunk, then ``(got, extra)`` at the end (``extra``: bytes beyond the size)."""
    arrived: queue.Queue[tuple[int, bool | None] | BaseException] = queue.Queue(maxsize=16)

    def reader() -> None:
        try:
            with _open_shard(shard) as f:
                got = 0
                for _, got in _fill(f, view, shard.size, chunk):
                    arrived.put((got, None))
                arrived.put((got, bool(f.read(1))))
        except BaseException as e:  # re-raised in the caller's thread
            arrived.put(e)

    thread = threading.Thread(target=reader, name=f"read {shard.entry.filename}", daemon=True)
    thread.start()
    hashed = 0
    try:
        while True:
            item = arrived.get()
            if isinstance(item, BaseException):
                raise item
            upto, extra = item
            if upto > hashed:
                h.update(view[hashed:upto])
                hashed = upto
            if extra is not None:
                return hashed, extra
    finally:
        while thread.is_alive():  # never leave the reader blocked on a full queue
            try:
                arrived.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()


class PackRead:
    """A pack's plan (manifest, limits, memory budget, shard headers), its config, then every shard read and
    verified, two shards at a time. Started at once in a thread of its own unless ``start=False`` (then
    ``result()`` does the work in the caller's thread); ``result()`` returns what it read or raises what it
    raised (PackInvalid, PackTooLarge, ConfigInvalid, MemoryError). The order is the loader's: nothing is
    read before the plan and config pass."""

    def __init__(self, pack_dir: Path | str, config: LoaderConfig, *, start: bool = True) -> None:
        self.pack_dir, self.config = Path(pack_dir), config
        self.timings: dict[str, float] = {}
        self._done: tuple[PackPlan, PackConfig, list[ShardBuffer]] | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="pack read", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._done = self._read()
        except BaseException as e:  # re-raised by result(), in the caller's thread
            self._error = e

    def _read(self) -> tuple[PackPlan, PackConfig, list[ShardBuffer]]:
        c = self.config
        t0 = time.perf_counter()
        plan = plan_pack(
            self.pack_dir,
            c.limits,
            allowed_roots=c.allowed_roots,
            memory_budget_bytes=c.memory_budget_bytes,
            overhead_bytes=c.overhead_bytes,
        )
        packcfg = pack_config(plan.manifest, plan.pack_dir, c.allowed_roots)
        t1 = time.perf_counter()
        workers = max(1, min(c.read_threads, len(plan.shards)))
        if workers == 1:
            buffers = [read_verified(s, c.read_chunk_bytes) for s in plan.shards]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                buffers = list(pool.map(lambda s: read_verified(s, c.read_chunk_bytes), plan.shards))
        self.timings = {"plan_s": t1 - t0, "read_verify_s": time.perf_counter() - t1}
        return plan, packcfg, buffers

    def result(self) -> tuple[PackPlan, PackConfig, list[ShardBuffer]]:
        if self._thread is None:
            if self._done is None:
                self._done = self._read()
            return self._done
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._done is not None
        return self._done
