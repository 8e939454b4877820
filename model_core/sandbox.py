"""The validation sandbox's supervisor side: run the loader and smoke suite in a limited child process.

Torch-free on purpose: the supervisor must stay small and must survive whatever the child does. The child
gets an address-space limit and a CPU-time limit, a scrubbed environment and its own process group (killed
whole at the wall-clock limit). A JSON report with a ``verdict`` is always written, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model_core.config import ModelConfig
from model_core.errors import ModelCoreError, bounded, bounded_report
from model_core.isolation import UNPRIVILEGED_USER, Drop, Isolation, plan_user, preexec, private_dir
from model_core.manifest import PackLimits
from model_core.preflight import DEFAULT_RUNTIME_OVERHEAD_BYTES, plan_pack

EXIT_CODES: dict[str, int] = {
    "pass": 0,
    "invalid_pack": 10,
    "smoke_failed": 11,
    "out_of_memory": 12,
    "timed_out": 13,
    "crashed": 14,
    "behavior_failed": 15,
}
USAGE_EXIT_CODE = 2

# Passed through to the child when set; everything else (tokens, keys, MODELPACK_*) is dropped.
SAFE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
THREAD_ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
STDERR_TAIL_BYTES = 4000
CHILD_MAX_FILE_BYTES = 64 * 1024 * 1024
# The supervisor has no memory limit, so it never reads or parses a large header itself (JSON parsing costs
# ~25x the text): longer headers are only length-checked here and parsed by the limited child.
SUPERVISOR_HEADER_PARSE_BYTES = 1024 * 1024
CHILD_RESULT_MAX_BYTES = 1024 * 1024  # a larger result file is ignored (the verdict comes from the exit)
_NO_NETNS = "no network namespace"
_OOM_MARKERS = ("failed to map segment", "Cannot allocate memory", "MemoryError", "can't allocate memory")


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 8 * 1024**3
    cpu_seconds: int = 900
    wall_seconds: float = 1200.0
    time_budget_s: float = 300.0  # the smoke suite's own budget, inside the wall-clock limit
    threads: int | None = None  # torch threads in the child; None = the CPU count
    overhead_bytes: int = DEFAULT_RUNTIME_OVERHEAD_BYTES
    allowed_roots: tuple[str, ...] = ()
    manifest_max_bytes: int = PackLimits.manifest_max_bytes
    max_shards: int = PackLimits.max_shards
    header_max_bytes: int = PackLimits.header_max_bytes
    filename_max_len: int = PackLimits.filename_max_len
    isolate: bool = True  # new network namespace, ``user`` when root; see model_core.isolation
    user: str = UNPRIVILEGED_USER  # whom the worker runs as when the supervisor is root
    # The worker's interpreter (None: the supervisor's own). It must be the same Python version; the
    # supervisor's packages are put on its path. Use one the sandbox user can run when the supervisor's
    # own lives where that user cannot (e.g. under a 0700 /root): the report says when root was kept.
    worker_python: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "memory_bytes",
            "cpu_seconds",
            "wall_seconds",
            "time_budget_s",
            "manifest_max_bytes",
            "max_shards",
            "header_max_bytes",
            "filename_max_len",
        ):
            if getattr(self, name) <= 0:
                raise ModelCoreError(f"sandbox limit {name}={getattr(self, name)!r} must be positive")

    @property
    def pack_limits(self) -> PackLimits:
        return PackLimits(
            manifest_max_bytes=self.manifest_max_bytes,
            max_shards=self.max_shards,
            header_max_bytes=self.header_max_bytes,
            filename_max_len=self.filename_max_len,
        )


def exit_code(verdict: str) -> int:
    return EXIT_CODES[verdict]


def import_roots() -> list[Path]:
    """Where the worker imports from besides its interpreter's standard library: model_core's root and
    the supervisor's site-packages (put on a foreign interpreter's path; checked readable before a drop)."""
    found = [Path(__file__).resolve().parent.parent]
    for key in ("purelib", "platlib"):
        found.append(Path(sysconfig.get_paths()[key]))
    return [p for p in dict.fromkeys(found) if p.exists()]


def child_env(
    environ: Mapping[str, str], threads: int | None = None, extra_path: tuple[str, ...] = ()
) -> dict[str, str]:
    """The child's environment: a few essentials and thread counts, never a secret or MODELPACK_* value."""
    env = {
        k: v
        for k, v in environ.items()
        if (k in SAFE_ENV_KEYS or k in THREAD_ENV_KEYS)
        and not _SECRET.search(k)
        and not k.startswith("MODELPACK_")
    }
    env.setdefault("PATH", os.defpath)
    # Make model_core importable even when the caller's environment does not say where it is.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", ""), *extra_path) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["MALLOC_ARENA_MAX"] = "2"  # glibc arenas otherwise reserve 64 MiB of address space per thread
    if threads is not None:
        for k in THREAD_ENV_KEYS:
            env[k] = str(threads)
    return env


def limit_setter(memory_bytes: int, cpu_seconds: int) -> Callable[[], None]:
    """A preexec function applying RLIMIT_AS and RLIMIT_CPU (SIGXCPU at the limit, SIGKILL 5 s later)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # The child writes only its result and stderr; a flood of output must not fill the disk.
        resource.setrlimit(resource.RLIMIT_FSIZE, (CHILD_MAX_FILE_BYTES, CHILD_MAX_FILE_BYTES))

    return apply


def preflight(pack_dir: Path, limits: SandboxLimits) -> dict[str, Any] | None:
    """Refuse a malformed or oversized pack before starting a child; None when it may go ahead."""
    try:
        plan = plan_pack(
            pack_dir,
            limits.pack_limits,
            allowed_roots=tuple(Path(r) for r in limits.allowed_roots),
            memory_budget_bytes=limits.memory_bytes,
            overhead_bytes=limits.overhead_bytes,
            parse_headers_up_to=SUPERVISOR_HEADER_PARSE_BYTES,
        )
        ModelConfig.from_dict(plan.manifest.config)
    except ModelCoreError as e:
        return {"verdict": "invalid_pack", "reason": e.message, "error_code": e.code}
    return None


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - STDERR_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


WorkerCommand = Callable[[Path], list[str]]


def run_child(
    pack_dir: Path, limits: SandboxLimits, workdir: Path, command: WorkerCommand | None = None
) -> dict[str, Any]:
    """Run ``model_core.worker`` under the limits and turn however it ended into a verdict.

    ``command`` (for tests) builds another child command line from the result-file path; the child
    must write ``{"verdict": ..., "reason": ...}`` there and exit with that verdict's code.
    """
    result_path = workdir / "result.json"
    stderr_path = workdir / "stderr.txt"
    cmd = command(result_path) if command is not None else _worker_command(pack_dir, limits, result_path)
    roots = import_roots()
    if limits.isolate:
        drop, cmd = plan_user(
            limits.user, limits.worker_python, cmd, roots, _pack_paths(pack_dir), own_worker=command is None
        )
    else:
        drop = Drop(None, f"uid {os.geteuid()}", "isolation is off")
    ids = drop.ids
    if ids is not None:
        os.chown(workdir, *ids)
    foreign = os.path.realpath(cmd[0]) != os.path.realpath(sys.executable)
    env = child_env(os.environ, limits.threads, tuple(map(str, roots[1:])) if foreign else ())
    env["TMPDIR"] = str(private_dir(workdir / "tmp", ids))
    sandbox = {"user": drop.user, "tmpdir": "private", "fds": "closed"}
    if drop.kept is not None:
        sandbox["user_kept"] = drop.kept

    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=env,
            cwd=workdir,
            preexec_fn=preexec(
                Isolation(uid=ids[0] if ids else None, gid=ids[1] if ids else None, new_netns=limits.isolate),
                limit_setter(limits.memory_bytes, limits.cpu_seconds),
            ),
            # Its own group so the wall-clock kill takes every descendant; PR_SET_PDEATHSIG (isolation)
            # makes it die with this supervisor.
            start_new_session=True,
            close_fds=True,
            pass_fds=(),
        )
        exited = _wait_unreaped(proc.pid, limits.wall_seconds)
        # Kill the whole group while the leader is still an unreaped zombie, so its process-group id
        # cannot have been reused: no grandchild outlives the validation.
        _kill_group(proc.pid)
        rc = proc.wait()
    sandbox["network"] = "host" if not limits.isolate or _NO_NETNS in _tail(stderr_path) else "none"
    return {**_outcome(limits, exited, rc, result_path, stderr_path), "sandbox": sandbox}


def _pack_paths(pack_dir: Path) -> list[Path]:
    try:
        return [pack_dir, *(p.resolve() for p in pack_dir.iterdir())]
    except OSError:
        return [pack_dir]


def _outcome(
    limits: SandboxLimits, exited: bool, rc: int, result_path: Path, stderr_path: Path
) -> dict[str, Any]:
    if not exited:
        return {
            "verdict": "timed_out",
            "reason": f"the validation exceeded the wall-clock limit of {limits.wall_seconds:g} s and was killed",
            "stderr_tail": _tail(stderr_path),
        }
    child: dict[str, Any] = {}
    if result_path.exists() and result_path.stat().st_size <= CHILD_RESULT_MAX_BYTES:
        try:
            child = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            child = {}
    if rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU:
            verdict, reason = "timed_out", f"the validation used its CPU-time limit of {limits.cpu_seconds} s"
        else:
            verdict = "crashed"
            reason = f"the validation process was killed by {_signal_name(sig)}"
            if sig == signal.SIGKILL:
                reason += " (possibly the kernel's out-of-memory killer)"
        return {
            "verdict": verdict,
            "reason": reason,
            "signal": _signal_name(sig),
            **_child_extras(child),
            "stderr_tail": _tail(stderr_path),
        }
    if not isinstance(child, dict):
        child = {}
    if child.get("verdict") in EXIT_CODES and EXIT_CODES[child["verdict"]] == rc:
        return child
    tail = _tail(stderr_path)
    if any(m in tail for m in _OOM_MARKERS):  # e.g. the interpreter could not even map libpython
        return {
            "verdict": "out_of_memory",
            "reason": f"the validation process could not start or run within {limits.memory_bytes} bytes "
            "of address space",
            "stderr_tail": tail,
        }
    return {
        "verdict": "crashed",
        "reason": f"the validation process exited with status {rc} without a report",
        "stderr_tail": tail,
    }


def _worker_command(pack_dir: Path, limits: SandboxLimits, result_path: Path) -> list[str]:
    cmd = [
        limits.worker_python or sys.executable,
        "-B",
        "-m",
        "model_core.worker",
        str(pack_dir),
        "--result",
        str(result_path),
        "--time-budget",
        str(limits.time_budget_s),
        "--memory-bytes",
        str(limits.memory_bytes),
        "--overhead-bytes",
        str(limits.overhead_bytes),
    ]
    cmd += ["--manifest-max-bytes", str(limits.manifest_max_bytes), "--max-shards", str(limits.max_shards)]
    cmd += [
        "--header-max-bytes",
        str(limits.header_max_bytes),
        "--filename-max-len",
        str(limits.filename_max_len),
    ]
    for root in limits.allowed_roots:
        cmd += ["--allow-root", root]
    if limits.threads is not None:
        cmd += ["--threads", str(limits.threads)]
    return cmd


def _child_extras(child: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in child.items() if k not in ("verdict", "reason")}


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` exits (without reaping it) or the timeout passes; True if it exited."""
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if poller.poll(min(left, 3600.0) * 1000):
                return True
    finally:
        os.close(fd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def validate_pack(
    pack_dir: Path | str,
    report_path: Path | str,
    limits: SandboxLimits = SandboxLimits(),
    *,
    command: WorkerCommand | None = None,
) -> dict[str, Any]:
    """Preflight, then the sandboxed child; always writes ``report_path`` and returns the same report."""
    start = time.monotonic()
    pack_dir = Path(pack_dir).resolve()
    try:
        outcome = preflight(pack_dir, limits)
        if outcome is None:
            with tempfile.TemporaryDirectory(prefix="modelpack-validate-") as tmp:
                outcome = run_child(pack_dir, limits, Path(tmp), command)
    except Exception as e:  # the supervisor itself must never fail without a report
        outcome = {"verdict": "crashed", "reason": f"the supervisor failed: {type(e).__name__}: {bounded(e)}"}
    report = {
        **outcome,
        "exit_code": EXIT_CODES[outcome["verdict"]],
        "pack_dir": str(pack_dir),
        "limits": asdict(limits),
        "wall_s": round(time.monotonic() - start, 3),
    }
    report = bounded_report(report)
    write_report(Path(report_path), report)
    return report


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename) so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
