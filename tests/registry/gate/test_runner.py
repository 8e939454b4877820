"""The sandbox subprocess seam: command line, scrubbed environment, and verdicts for whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from registry.gate.config import SandboxBudget
from registry.gate.runner import read_report, run_sandbox, sandbox_command, sandbox_env
from tests.registry.gate.packs import make_pack


def test_the_command_carries_every_budget_and_allowed_root(tmp_path: Path) -> None:
    budget = SandboxBudget(
        memory_bytes=3 * 1024**3, cpu_seconds=7, wall_seconds=9.5, time_budget_s=4, threads=1
    )
    cmd = sandbox_command(tmp_path / "p", tmp_path / "r.json", budget, [Path("/blocks")])
    assert cmd[1:3] == ["-m", "model_core.validate"]
    for flag, value in [
        ("--memory-bytes", str(3 * 1024**3)),
        ("--cpu-seconds", "7"),
        ("--wall-seconds", "9.5"),
        ("--time-budget", "4"),
        ("--threads", "1"),
        ("--allow-root", "/blocks"),
    ]:
        assert cmd[cmd.index(flag) + 1] == value


def test_the_sandbox_environment_holds_no_secret() -> None:
    env = sandbox_env(
        {
            "PATH": "/bin",
            "MODELPACK_TOKEN": "t",
            "AWS_SECRET_ACCESS_KEY": "s",
            "HOME": "/h",
            "DATABASE_URL": "x",
        }
    )
    assert set(env) == {"PATH", "HOME", "PYTHONPATH"}


def test_a_missing_or_garbage_report_is_a_crash(tmp_path: Path) -> None:
    assert read_report(tmp_path / "none.json", 1, b"Traceback...")["verdict"] == "crashed"
    (tmp_path / "bad.json").write_text('{"verdict": "excellent"}')
    out = read_report(tmp_path / "bad.json", 0)
    assert out["verdict"] == "crashed" and "status 0" in out["reason"]


async def test_a_supervisor_that_hangs_is_killed_and_reported_timed_out(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    budget = SandboxBudget(wall_seconds=0.5, supervisor_grace_s=0.5, python=str(fake))
    out = await run_sandbox(tmp_path, tmp_path / "r.json", budget, ())
    assert out["verdict"] == "timed_out" and "did not finish" in out["reason"]


async def test_the_real_sandbox_reports_an_invalid_pack(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    out = await run_sandbox(tmp_path, tmp_path / "r.json", SandboxBudget(), ())
    assert out["verdict"] == "invalid_pack" and out["reason"]


def test_a_huge_report_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"verdict": "invalid_pack", "reason": "n" * 5_000_000}))
    out = read_report(tmp_path / "r.json", 10)
    assert out["verdict"] == "crashed" and "without a usable report" in out["reason"]  # not even read
    (tmp_path / "r.json").write_text(json.dumps({"verdict": "invalid_pack", "reason": "n" * 500_000}))
    out = read_report(tmp_path / "r.json", 10)
    assert out["verdict"] == "invalid_pack" and len(json.dumps(out)) < 4096


def _workers(pack: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "model_core.worker" in cmd and str(pack) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


async def _until(cond: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_cancelling_a_validation_leaves_no_worker(tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "pack")
    task = asyncio.create_task(run_sandbox(pack, tmp_path / "r.json", SandboxBudget(threads=1), ()))
    assert await _until(lambda: bool(_workers(pack)) or task.done()), "no worker started"
    assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await _until(lambda: not _workers(pack), 60.0), "the worker outlived the cancelled validation"


def test_the_sandbox_user_and_interpreter_settings_reach_the_validator(tmp_path: Path) -> None:
    cmd = sandbox_command(
        tmp_path,
        tmp_path / "r.json",
        SandboxBudget(sandbox_user="modelpack", worker_python="/usr/bin/python3.11"),
        [],
    )
    assert cmd[cmd.index("--sandbox-user") + 1] == "modelpack"
    assert cmd[cmd.index("--worker-python") + 1] == "/usr/bin/python3.11"
    assert "--sandbox-user" not in sandbox_command(tmp_path, tmp_path / "r.json", SandboxBudget(), [])
