"""The daemon process's heap: set aside from the collector once started, and glibc's malloc told to keep what it frees.

An upload arrives as one fresh 256 KiB ``bytes`` per socket read (asyncio's transport), copied and freed a moment
later. glibc's defaults give such memory back to the kernel as soon as the top of the heap is free (``brk``
shrinks past 2 x the mmap threshold), so the next reads fault the same pages in again, zeroed: for a 1 GiB
upload that was 18 % of the event loop's samples in page faults, and ~1 s of system time besides. Keeping up
to ``TRIM_BYTES`` free at the heap's top, and serving every allocation under ``MMAP_BYTES`` from the heap
rather than its own mapping, turns that into reuse. Setting either fixes both (glibc otherwise adapts the
mmap threshold itself), so both are set. Only the daemon's process does this (``modelpack serve``); on
another C library it is a no-op.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys

log = logging.getLogger("modelpack.daemon")

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
TRIM_BYTES = 32 * 1024 * 1024  # free memory kept at the heap's top (bounds what the process holds beyond use)
MMAP_BYTES = 1024 * 1024  # above asyncio's 256 KiB reads, below the hashing pipeline's 4 MiB batch buffers


def keep_freed_memory() -> bool:
    """Tunes glibc's malloc as the module's doc says; False where the C library has no ``mallopt``."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
    if not ok:
        log.warning("mallopt refused the heap settings; large uploads will cost more system time")
    return ok


def freeze_startup_heap() -> None:
    """Once every service is open: what startup made (modules, tables, compiled statements) is set aside from
    the collector's scans. A full collection scanned all of it, ~100 ms with the loop stopped, every few
    seconds under load (the p99 of every request); now it scans only what serving made since."""
    gc.collect()
    gc.freeze()
