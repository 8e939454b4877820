"""One daemon per data dir: an exclusive ``flock`` on ``DATA_DIR/repo.lock``, held while the daemon runs.

The blockstore's index lives in each process, so two daemons on one folder would each trust a picture
the other changes. As Kubo locks its repo, the second daemon refuses to start, naming the holder's PID.
The kernel drops the lock when the holder exits, however it exits: a stale file never blocks a start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from registry.errors import ConfigError

LOCK_FILE = "repo.lock"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[Path]:
    """Hold the data dir's lock; ConfigError naming the holder's PID when another process has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise ConfigError(
                f"the data dir {data_dir} is in use by another modelpack daemon (PID {holder}); "
                "stop that one or start this one with another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock
