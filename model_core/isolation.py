"""OS-level isolation of the validation child, applied between fork and exec (Linux; best effort elsewhere).

The child dies with its supervisor (``PR_SET_PDEATHSIG``), gets a new, empty network namespace where the
OS allows it, and gives up root for an unprivileged user (``nobody`` unless configured) when the supervisor
runs as root and that user can start the worker's interpreter (tried as that user), read the packages and
read the pack (``plan_drop``); otherwise it keeps root and the report says why (``sandbox.user_kept``).
Every step that is not possible here is skipped with a note on the child's stderr; the supervisor records
what was applied in the report (``sandbox``).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import stat
import subprocess
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


def unprivileged_ids(user: str = UNPRIVILEGED_USER) -> tuple[int, int] | None:
    """(uid, gid) to run the child as when the supervisor is root; None when not root or no such user."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


@dataclass(frozen=True)
class Drop:
    """Whom the child runs as: ``ids`` None keeps the supervisor's user, and ``kept`` then says why."""

    ids: tuple[int, int] | None
    user: str  # as the report shows it
    kept: str | None = None


def _may(st: os.stat_result, uid: int, gid: int, bits: int) -> bool:
    """Whether ``uid``/``gid`` (no supplementary groups: the child drops them) has ``bits`` (r=4, x=1)."""
    if st.st_uid == uid:
        return st.st_mode >> 6 & bits == bits
    if st.st_gid == gid:
        return st.st_mode >> 3 & bits == bits
    return st.st_mode & bits == bits


def unreadable_by(paths: Iterable[Path], uid: int, gid: int) -> str | None:
    """Why ``uid`` cannot read one of ``paths`` (following links; folders need read and search, every
    folder above search), or None when it can read them all."""
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as e:
            return f"{path} cannot be examined ({e.strerror})"
        if not _may(st, uid, gid, 5 if stat.S_ISDIR(st.st_mode) else 4):
            return f"{path} is not readable by that user (mode {stat.S_IMODE(st.st_mode):04o})"
        for parent in Path(os.path.realpath(path)).parents:
            try:
                pst = os.stat(parent)
            except OSError as e:
                return f"{parent} cannot be examined ({e.strerror})"
            if not _may(pst, uid, gid, 1):
                return f"the folder {parent} is not searchable by that user (mode {stat.S_IMODE(pst.st_mode):04o})"
    return None


def _as_user(ids: tuple[int, int]) -> Callable[[], None]:
    def apply() -> None:
        os.setgroups([])
        os.setgid(ids[1])
        os.setuid(ids[0])

    return apply


def interpreter_blocker(python: str, ids: tuple[int, int], timeout_s: float = 60.0) -> str | None:
    """Why ``python`` cannot run the worker as ``ids``, found by starting it as that user (it must run, and be
    the supervisor's Python version, whose packages the worker imports), or None when it can."""
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        done = subprocess.run(
            [python, "-I", "-c", probe],
            capture_output=True,
            env={},
            cwd="/",
            timeout=timeout_s,
            preexec_fn=_as_user(ids),
            check=False,
        )
    except OSError as e:
        return f"it cannot start the interpreter {python} ({e.strerror})"
    except subprocess.TimeoutExpired:
        return f"the interpreter {python} did not start within {timeout_s:g} s"
    got = done.stdout.decode("ascii", "replace").strip()
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return f"the interpreter {python} fails as that user: {why[0][:200]}"
    if got != want:
        return f"the interpreter {python} is Python {got[:20]}, not {want} (the supervisor's packages)"
    return None


def plan_drop(user: str, python: str, import_roots: Iterable[Path], pack_paths: Iterable[Path]) -> Drop:
    """Run the child as ``user`` when the supervisor is root and that user can start ``python`` and read
    the packages (``import_roots``) and the pack; otherwise keep the supervisor's user, saying why (a
    validation that cannot read its own inputs would fail for the environment, not the pack)."""
    me = f"uid {os.geteuid()}"
    if os.geteuid() != 0:
        return Drop(None, me, "the supervisor is not root, so there is no user to drop")
    ids = unprivileged_ids(user)
    if ids is None:
        return Drop(None, me, f"the sandbox user {user!r} does not exist on this host")
    blocker = interpreter_blocker(python, ids) or unreadable_by([*import_roots, *pack_paths], *ids)
    if blocker is not None:
        return Drop(
            None,
            me,
            f"kept root: the sandbox user {user!r} cannot run the worker: {blocker}; run the worker with an "
            "interpreter and packages that user can read (the sandbox's worker_python), or choose another user",
        )
    return Drop(ids, user)


def system_pythons() -> list[str]:
    """The host's own interpreters of this Python version (world-readable where a venv's may not be)."""
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return [p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}") if os.path.isfile(p)]


def plan_user(
    user: str,
    worker_python: str | None,
    cmd: list[str],
    roots: list[Path],
    pack_paths: list[Path],
    *,
    own_worker: bool,
) -> tuple[Drop, list[str]]:
    """Whom the worker runs as, and with which interpreter: when the sandbox user cannot start the
    supervisor's (pyenv under a 0700 /root) and no ``worker_python`` was chosen, the host's own interpreter
    of the same version is tried before root is kept."""
    drop = plan_drop(user, cmd[0], roots, pack_paths)
    if drop.ids is not None or not own_worker or worker_python is not None or os.geteuid() != 0:
        return drop, cmd
    for python in system_pythons():
        if os.path.realpath(python) == os.path.realpath(cmd[0]):
            continue
        other = plan_drop(user, python, roots, pack_paths)
        if other.ids is not None:
            return other, [python, *cmd[1:]]
    return drop, cmd


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
