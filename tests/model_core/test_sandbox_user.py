"""#12 item 11 (last part): as root, the worker runs as the sandbox user when that user can start its
interpreter and read the packages and the pack; otherwise root is kept and the report says exactly why.

Here the daemon's own interpreter lives under /root (0700), so the sandbox user cannot start it; the
supervisor can run the worker with another interpreter of the same Python version (``worker_python``) that
the user can run, which these tests find on the system path (skipped, with the reason, where there is none).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from model_core import validate
from model_core.isolation import plan_drop, unreadable_by
from model_core.sandbox import SandboxLimits, import_roots, run_child, validate_pack

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="dropping to another user needs root")
VERSION = f"python{sys.version_info[0]}.{sys.version_info[1]}"
SYSTEM_PYTHON = shutil.which(VERSION, path="/usr/bin:/usr/local/bin:/bin")
LIMITS = SandboxLimits(
    memory_bytes=4 * 1024**3, cpu_seconds=120, wall_seconds=120, time_budget_s=60, threads=1
)
WHOAMI = "import os, sys, json; json.dump({'verdict': 'pass', 'reason': 'probe', 'uid': os.getuid()}, open(sys.argv[1], 'w'))"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can search (tmp_path's parents are 0700), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="drop-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _pack(shared: Path, mode: int = 0o644) -> Path:
    pack = shared / "pack"
    pack.mkdir(mode=0o755)
    (pack / "manifest.json").write_text("{}")
    (pack / "manifest.json").chmod(mode)
    return pack


def _work() -> Path:
    return Path(tempfile.mkdtemp(prefix="drop-work-"))


def test_readability_is_judged_for_that_user(shared_dir: Path) -> None:
    f = shared_dir / "f"
    f.write_text("x")
    if ROOT:
        os.chown(f, 4242, 4343)
    st = f.stat()
    f.chmod(0o640)
    assert unreadable_by([f], st.st_uid, 1) is None  # the owner reads it
    assert unreadable_by([f], 99999, st.st_gid) is None  # so does its group
    assert "not readable by that user (mode 0640)" in (unreadable_by([f], 99999, 99999) or "")
    shared_dir.chmod(0o700)
    assert "is not searchable" in (unreadable_by([f], 99999, st.st_gid) or "")


def test_not_root_keeps_the_user_and_says_so(shared_dir: Path) -> None:
    if ROOT:
        pytest.skip("the supervisor is root here")
    drop = plan_drop("nobody", sys.executable, [], [])
    assert drop.ids is None and drop.kept == "the supervisor is not root, so there is no user to drop"


@needs_root
def test_an_interpreter_the_user_cannot_start_keeps_root_with_the_reason(shared_dir: Path) -> None:
    hidden = Path(tempfile.mkdtemp(prefix="drop-hidden-"))  # 0700, like /root
    try:
        python = hidden / "python3"
        python.symlink_to(SYSTEM_PYTHON or sys.executable)
        work = _work()
        out = run_child(_pack(shared_dir), LIMITS, work, lambda r: [str(python), "-c", WHOAMI, str(r)])
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    assert out["uid"] == 0 and out["sandbox"]["user"] == "uid 0", out
    kept = out["sandbox"]["user_kept"]
    assert kept.startswith("kept root: the sandbox user 'nobody' cannot run the worker: ")
    assert f"cannot start the interpreter {python} (Permission denied)" in kept


@needs_root
def test_a_pack_the_user_cannot_read_keeps_root_with_the_reason(shared_dir: Path) -> None:
    if SYSTEM_PYTHON is None:
        pytest.skip(f"no {VERSION} outside /root that the sandbox user can run")
    if unreadable_by(import_roots(), 65534, 65534):  # that blocker would be the one reported
        pytest.skip(f"the packages are not readable by nobody: {unreadable_by(import_roots(), 65534, 65534)}")
    pack, work = _pack(shared_dir, mode=0o600), _work()
    try:
        out = run_child(pack, LIMITS, work, lambda r: [SYSTEM_PYTHON, "-c", WHOAMI, str(r)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert out["uid"] == 0
    assert f"{pack / 'manifest.json'} is not readable by that user (mode 0600)" in out["sandbox"]["user_kept"]


@needs_root
def test_a_missing_user_keeps_root_with_the_reason(shared_dir: Path) -> None:
    drop = plan_drop("no-such-user-here", sys.executable, [], [])
    assert (
        drop.ids is None and drop.kept == "the sandbox user 'no-such-user-here' does not exist on this host"
    )


@needs_root
def test_the_real_worker_drops_to_the_user_with_a_readable_interpreter(
    tiny_pack: Path, shared_dir: Path, tmp_path: Path
) -> None:
    if SYSTEM_PYTHON is None:
        pytest.skip(f"no {VERSION} outside /root that the sandbox user can run")
    if unreadable_by(import_roots(), 65534, 65534):
        pytest.skip(f"the packages are not readable by nobody: {unreadable_by(import_roots(), 65534, 65534)}")
    pack = shared_dir / "pack"
    shutil.copytree(tiny_pack, pack)
    subprocess.run(["chmod", "-R", "a+rX", str(pack)], check=True)
    report = validate_pack(pack, tmp_path / "r.json", replace(LIMITS, worker_python=SYSTEM_PYTHON))
    assert report["verdict"] == "pass", report
    assert report["sandbox"]["user"] == "nobody" and "user_kept" not in report["sandbox"]


@needs_root
def test_without_worker_python_the_hosts_own_interpreter_is_tried_before_root_is_kept(
    tiny_pack: Path, shared_dir: Path, tmp_path: Path
) -> None:
    if SYSTEM_PYTHON is None:
        pytest.skip(f"no {VERSION} outside /root that the sandbox user can run")
    if unreadable_by(import_roots(), 65534, 65534):
        pytest.skip(f"the packages are not readable by nobody: {unreadable_by(import_roots(), 65534, 65534)}")
    pack = shared_dir / "pack"
    shutil.copytree(tiny_pack, pack)
    subprocess.run(["chmod", "-R", "a+rX", str(pack)], check=True)
    report = validate_pack(pack, tmp_path / "r.json", LIMITS)  # no worker_python: the default path
    assert report["verdict"] == "pass", report
    assert report["sandbox"]["user"] == "nobody" and "user_kept" not in report["sandbox"]


@needs_root
def test_the_sandbox_user_is_a_command_line_option_of_the_validator(tiny_pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    rc = validate.main([str(tiny_pack), "--report", str(out), "--sandbox-user", "no-such-user-here"])
    report = json.loads(out.read_text())
    assert rc == 0 and report["verdict"] == "pass", report
    assert (
        report["sandbox"]["user_kept"] == "the sandbox user 'no-such-user-here' does not exist on this host"
    )
