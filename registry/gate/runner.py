"""Runs ``python -m model_core.validate`` as a subprocess and reads its report, without blocking the loop.

The registry imports only model_core's torch-free format: this process boundary is the layer rule's seam
for the model itself. The validate supervisor already limits its child; this side adds a scrubbed
environment and its own wall-clock backstop, and turns anything unexpected (no report, garbage) into a
``crashed`` verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from model_core.errors import bounded, bounded_report
from registry.gate.config import SandboxBudget

VERDICTS = (
    "pass",
    "invalid_pack",
    "smoke_failed",
    "behavior_failed",
    "out_of_memory",
    "timed_out",
    "crashed",
)
_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_READ_MAX_BYTES = 1024 * 1024  # the supervisor writes a few KiB; anything larger is not read
_PR_SET_PDEATHSIG = 1


class SandboxRunner(Protocol):
    async def __call__(
        self, pack_dir: Path, report_path: Path, budget: SandboxBudget, allowed_roots: Sequence[Path]
    ) -> dict[str, Any]: ...


def sandbox_command(
    pack_dir: Path, report_path: Path, budget: SandboxBudget, allowed_roots: Sequence[Path]
) -> list[str]:
    cmd = [
        budget.python,
        "-m",
        "model_core.validate",
        str(pack_dir),
        "--report",
        str(report_path),
        "--memory-bytes",
        str(budget.memory_bytes),
        "--cpu-seconds",
        str(budget.cpu_seconds),
        "--wall-seconds",
        str(budget.wall_seconds),
        "--time-budget",
        str(budget.time_budget_s),
        "--overhead-bytes",
        str(budget.runtime_overhead_bytes),
    ]
    optional = {
        "--threads": budget.threads,
        "--manifest-max-bytes": budget.manifest_max_bytes,
        "--max-shards": budget.max_shards,
        "--header-max-bytes": budget.header_max_bytes,
        "--filename-max-len": budget.filename_max_len,
        "--sandbox-user": budget.sandbox_user,
        "--worker-python": budget.worker_python,
    }
    for flag, value in optional.items():
        if value is not None:
            cmd += [flag, str(value)]
    for root in allowed_roots:
        cmd += ["--allow-root", str(root)]
    return cmd


def sandbox_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Only what a Python process needs: no tokens, keys or ``MODELPACK_*`` values reach the sandbox."""
    env = {k: environ[k] for k in _ENV_KEYS if k in environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


async def run_sandbox(
    pack_dir: Path, report_path: Path, budget: SandboxBudget, allowed_roots: Sequence[Path]
) -> dict[str, Any]:
    """The validate supervisor's report (always a dict with ``verdict`` and ``reason``)."""
    proc = await asyncio.create_subprocess_exec(
        *sandbox_command(pack_dir, report_path, budget, allowed_roots),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=sandbox_env(os.environ),
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    limit = budget.wall_seconds + budget.supervisor_grace_s
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=limit)
    except (TimeoutError, asyncio.CancelledError) as e:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        if isinstance(e, asyncio.CancelledError):
            raise
        return {
            "verdict": "timed_out",
            "reason": f"the validation supervisor did not finish within {limit:g} s",
        }
    return read_report(report_path, proc.returncode, err)


def _die_with_parent(parent: int) -> Any:
    """The supervisor gets SIGKILL when the daemon dies (its worker in turn dies with it)."""

    def apply() -> None:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(137)

    return apply


def read_report(report_path: Path, returncode: int | None, stderr: bytes = b"") -> dict[str, Any]:
    try:
        if report_path.stat().st_size > REPORT_READ_MAX_BYTES:
            raise ValueError("report too large")
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        report = None
    if not isinstance(report, dict) or report.get("verdict") not in VERDICTS:
        tail = stderr[-2000:].decode("utf-8", "replace")
        return {
            "verdict": "crashed",
            "reason": f"the validation supervisor exited with status {returncode} without a usable report",
            "stderr_tail": tail,
        }
    if not isinstance(report.get("reason"), str):
        report["reason"] = bounded(report.get("reason") or report["verdict"])
    return bounded_report(report)
