"""OS-level isolation of the validation child, applied between fork and exec (Linux; best effort elsewhere).

The child dies with its supervisor (``PR_SET_PDEATHSIG``), gets a new, empty network namespace where the
OS allows it, and gives up root for an unprivileged user (``nobody``) when the supervisor runs as root and
that user can read the pack. Every step that is not possible here is skipped with a note on the child's
stderr; the supervisor records what was applied in the report (``sandbox``).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000
UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class Isolation:
    """What the supervisor asks for; ``uid``/``gid`` None: keep the supervisor's user."""

    uid: int | None = None
    gid: int | None = None
    new_netns: bool = True


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _note(text: str) -> None:
    try:
        os.write(2, f"modelpack-sandbox: {text}\n".encode())
    except OSError:
        pass


def isolate(iso: Isolation, parent_pid: int) -> None:
    """Run in the child between fork and exec (async-signal-safe enough: no locks, no imports)."""
    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the supervisor died before the death signal was armed
            os._exit(137)
        if iso.new_netns and libc.unshare(CLONE_NEWNET) != 0:
            _note(
                f"no network namespace ({os.strerror(ctypes.get_errno())}); the child keeps the host network"
            )
    else:
        _note("not Linux: no death signal and no network namespace for the child")
    if iso.uid is not None and iso.gid is not None:
        os.setgroups([])
        os.setgid(iso.gid)
        os.setuid(iso.uid)


def unprivileged_ids() -> tuple[int, int] | None:
    """(uid, gid) to run the child as when the supervisor is root; None when not root or no such user."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def world_readable(paths: Iterable[Path]) -> bool:
    """True when any user can read every path (and search every folder above it)."""
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return False
        need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)
        if st.st_mode & need != need:
            return False
        for parent in path.parents:
            try:
                if not os.stat(parent).st_mode & stat.S_IXOTH:
                    return False
            except OSError:
                return False
    return True


def private_dir(path: Path, ids: tuple[int, int] | None) -> Path:
    """A fresh 0700 folder owned by the child's user."""
    path.mkdir(mode=0o700)
    if ids is not None:
        os.chown(path, *ids)
    return path


def preexec(iso: Isolation, limits: Callable[[], None]) -> Callable[[], None]:
    parent = os.getpid()

    def apply() -> None:
        limits()
        isolate(iso, parent)

    return apply
