"""The sandbox's isolation (issue #12 item 11): each property is shown by a child that tries to break it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from model_core.isolation import unreadable_by
from model_core.sandbox import SandboxLimits, import_roots, run_child

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="dropping to 'nobody' and new network namespaces need root")
# A world-executable interpreter: the unprivileged child must be able to start it (/root is 0700 here).
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
LIMITS = SandboxLimits(memory_bytes=4 * 1024**3, cpu_seconds=60, wall_seconds=60)

PROBE = r"""
import json, os, socket, sys
result, port, secrets = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as e:
        return type(e).__name__
def connect():
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
def read(p):
    with open(p, "rb") as f:
        f.read()
tmp = os.environ.get("TMPDIR", "")
st = os.stat(tmp) if tmp else None
out = {
    "verdict": "pass", "reason": "probe", "uid": os.getuid(), "tmpdir": tmp,
    "tmp_mode": st.st_mode & 0o777 if st else None, "tmp_owner": st.st_uid if st else None,
    "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
    "network": attempt(connect),
    "secrets": {p: attempt(lambda p=p: read(p)) for p in secrets},
}
with open(result, "w") as f:
    json.dump(out, f)
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can search (tmp_path's parents are 0700), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="iso-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def probe(shared: Path, secrets: list[Path], port: int) -> dict:
    pack = shared / "pack"
    pack.mkdir(mode=0o755)
    (pack / "manifest.json").write_text("{}")
    (pack / "manifest.json").chmod(0o644)
    work = Path(tempfile.mkdtemp(prefix="iso-work-"))
    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_w, True)  # an inheritable descriptor the child must still not get
    try:
        cmd = lambda result: [SYSTEM_PYTHON, "-c", PROBE, str(result), str(port), *map(str, secrets)]  # noqa: E731
        outcome = run_child(pack, LIMITS, work, cmd)
        outcome["leaked_fd"] = leaked_w
        return outcome
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


def test_child_gets_a_private_tmpdir_and_no_descriptors(shared_dir: Path, listener: int) -> None:
    out = probe(shared_dir, [], listener)
    assert out["verdict"] == "pass", out
    assert out["tmpdir"].startswith(tempfile.gettempdir()) and out["tmpdir"].endswith("/tmp")
    assert out["tmp_mode"] == 0o700 and out["sandbox"]["tmpdir"] == "private"
    assert out["leaked_fd"] not in out["fds"] and len(set(out["fds"]) - {0, 1, 2}) <= 1  # listdir's own


@needs_root
def test_child_runs_as_nobody_and_cannot_read_secrets(shared_dir: Path, listener: int) -> None:
    blocked = unreadable_by(import_roots(), 65534, 65534)
    if blocked:  # e.g. a checkout under a 0700 temporary folder: the drop is refused, and says so
        pytest.skip(f"the packages are not readable by nobody here, so the worker keeps root: {blocked}")
    db = shared_dir / "registry.sqlite3"
    kek = shared_dir / "kek.key"
    for f in (db, kek):
        f.write_bytes(b"secret")
        f.chmod(0o600)
    other = shared_dir / "data"  # another pack's shard behind the 0700 data dir
    other.mkdir(mode=0o700)
    (other / "shard.safetensors").write_bytes(b"weights")
    (other / "shard.safetensors").chmod(0o644)
    out = probe(shared_dir, [db, kek, other / "shard.safetensors"], listener)
    assert out["sandbox"]["user"] == "nobody" and out["uid"] == 65534, out
    assert out["tmp_owner"] == 65534
    assert set(out["secrets"].values()) == {"PermissionError"}, out["secrets"]


@needs_root
def test_child_has_no_network(shared_dir: Path, listener: int) -> None:
    out = probe(shared_dir, [], listener)
    if out["sandbox"]["network"] != "none":
        pytest.skip("this host refuses a new network namespace (the child keeps the host network)")
    assert out["network"] != "allowed", out


def test_without_isolation_the_child_keeps_the_network(shared_dir: Path, listener: int) -> None:
    pack = shared_dir / "pack"
    pack.mkdir()
    work = Path(tempfile.mkdtemp(prefix="iso-work-"))
    try:
        limits = SandboxLimits(memory_bytes=4 * 1024**3, cpu_seconds=60, wall_seconds=60, isolate=False)
        out = run_child(pack, limits, work, lambda r: [SYSTEM_PYTHON, "-c", PROBE, str(r), str(listener)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert out["network"] == "allowed" and out["sandbox"]["network"] == "host"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


SUPERVISOR = r"""
import sys
from pathlib import Path
from model_core.sandbox import SandboxLimits, run_child
pidfile = sys.argv[1]
child = "import os, time; open(%r, 'w').write(str(os.getpid())); time.sleep(600)" % pidfile
run_child(Path(sys.argv[2]), SandboxLimits(wall_seconds=600), Path(sys.argv[3]),
          lambda r: [sys.executable, "-c", child])
"""


def test_worker_dies_with_its_supervisor(tmp_path: Path) -> None:
    pidfile = tmp_path / "worker.pid"
    (tmp_path / "pack").mkdir()
    (tmp_path / "work").mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    sup = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(pidfile), str(tmp_path / "pack"), str(tmp_path / "work")],
        env=env,
    )
    try:
        assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        worker = int(pidfile.read_text())
        assert not gone(worker)
        sup.kill()
        sup.wait(timeout=60)
        assert wait_for(lambda: gone(worker)), "the worker outlived its supervisor"
    finally:
        sup.kill()
        sup.wait(timeout=60)
