"""The sandboxed child: load a pack, smoke-test it, run its behavioural checks (the manifest's
``evaluation``), record its behavioural fingerprint, write the result JSON, exit with the verdict's code.

Run by ``model_core.sandbox`` under resource limits (``python -m model_core.worker PACK --result F``);
not meant to be called directly. The supervisor reads the result file and the exit status.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

# Address space kept back so that running out of memory still leaves room to write the report.
_RESERVE = bytearray(32 * 1024 * 1024)

SMALL_PACK_BYTES = 64 * 1024 * 1024
EXIT_CODES = {
    "pass": 0,
    "invalid_pack": 10,
    "smoke_failed": 11,
    "out_of_memory": 12,
    "timed_out": 13,
    "crashed": 14,
    "behavior_failed": 15,
}


def _is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    markers = ("can't allocate memory", "cannot allocate memory", "out of memory", "failed to map segment")
    return isinstance(e, MemoryError) or any(m in text for m in markers)


def run(args: argparse.Namespace) -> dict[str, Any]:
    # The pack's reads and hashing start first, in threads, and need no torch: they run on the CPU that
    # torch's import (one thread) leaves idle. A meter samples the CPUs' use meanwhile; its latest quarter
    # second before the checks picks their threads.
    from model_core.errors import ConfigInvalid, PackInvalid
    from model_core.manifest import PackLimits
    from model_core.shardread import LoaderConfig, PackRead

    meter = BusyMeter(every_s=0.05) if not args.threads else None
    roots = tuple(Path(r) for r in args.allow_root)
    config = LoaderConfig(
        limits=PackLimits(
            manifest_max_bytes=args.manifest_max_bytes,
            max_shards=args.max_shards,
            header_max_bytes=args.header_max_bytes,
            filename_max_len=args.filename_max_len,
        ),
        allowed_roots=roots,
        memory_budget_bytes=args.memory_bytes,
        overhead_bytes=args.overhead_bytes,
    )
    early = PackRead(args.pack_dir, config)

    import torch

    from model_core.behaviour import plan_evaluation, read_manifest_data, run_evaluation
    from model_core.loader import load_pack
    from model_core.smoke import SmokeConfig, run_smoke

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        loaded = load_pack(args.pack_dir, config, early=early)
        load_s = time.perf_counter() - t0  # what the load added after the imports (its reads ran beside them)
        # The evaluation block is checked against the model before the smoke suite spends any time.
        manifest = read_manifest_data(args.pack_dir, args.manifest_max_bytes)
        plan = plan_evaluation(args.pack_dir, manifest, loaded.model, roots)
        if meter is not None:
            torch.set_num_threads(auto_threads(loaded.total_bytes, torch.get_num_threads(), meter))
    except (PackInvalid, ConfigInvalid) as e:
        return {"verdict": "invalid_pack", "reason": e.message, "error_code": e.code}
    finally:
        if meter is not None:
            meter.close()  # whatever happened: no sampling thread outlives the load
    smoke = run_smoke(loaded.model, SmokeConfig(time_budget_s=args.time_budget))
    load = {
        "seconds": round(load_s, 4),
        "timings": {k: round(v, 4) for k, v in loaded.timings.items()},
        "bytes": loaded.total_bytes,
        "dtype": loaded.dtype,
        "ignored_config_keys": loaded.ignored_config_keys,
        "model_name": loaded.manifest.model_name,
        "model_version": loaded.manifest.model_version,
    }
    common = {"load": load, "smoke": smoke, **_fingerprint(loaded.model)}
    if smoke["budget_exhausted"]:
        reason = f"the smoke suite's time budget of {args.time_budget:g} s ran out before every check ran"
        return {"verdict": "timed_out", "reason": reason, **common}
    if not smoke["passed"]:
        failed = [c for c in smoke["checks"] if not c["passed"]]
        reason = "; ".join(f"{c['name']}: {c['reason']}" for c in failed)
        return {"verdict": "smoke_failed", "reason": reason, **common}
    if plan is None:
        return {"verdict": "pass", "reason": "the pack loaded and every smoke check passed", **common}
    behaviour, failures = run_evaluation(plan, loaded.model, args.time_budget)
    if behaviour["budget_exhausted"] and not failures:
        reason = (
            f"the behavioural checks' time budget of {args.time_budget:g} s ran out after "
            f"{len(behaviour['prompts'])} of {len(plan.evaluation.prompts)} prompts"
        )
        return {"verdict": "timed_out", "reason": reason, "behaviour": behaviour, **common}
    if not failures:
        reason = "the pack loaded, every smoke check passed and its model behaves as its evaluation expects"
        return {"verdict": "pass", "reason": reason, "behaviour": behaviour, **common}
    more = f" (and {len(failures) - 1} more failed checks)" if len(failures) > 1 else ""
    return {"verdict": "behavior_failed", "reason": failures[0] + more, "behaviour": behaviour, **common}


def default_threads(pack_bytes: int, *, current: int, cpus: int, busy_cpus: float) -> int:
    """Torch threads for the checks when ``--threads`` is not given.

    ``cpus``: the CPUs this process may run on; ``busy_cpus``: how many of them other work keeps busy.
    Tiny packs get 1 (thread start-up costs more than it gives). Otherwise never more threads than
    CPUs left idle, counting this process's own: OpenMP threads that share a core spin-wait on each
    other, which made fp16 matmuls on a loaded 2-core machine ~10x slower with 2 threads than with 1.
    """
    if pack_bytes < SMALL_PACK_BYTES:
        return 1
    idle = math.floor(cpus - busy_cpus + 1)
    return max(1, min(current, cpus, idle))


BUSY_WINDOW_S = 0.25


class BusyMeter:
    """What other processes keep the CPUs busy with: the machine's busy time (Linux ``/proc/stat``) less this
    process's own, over the last ``min_window_s`` (at least) before ``others()`` is asked.

    With ``every_s`` a thread samples the counters meanwhile, so the answer covers only the latest window:
    the worker starts one before its imports and the pack's reads, and a parent's work that ended during
    them (the local gate hashes the shards while the sandbox starts) is not taken for lasting load. Without
    it, the window runs from the start."""

    def __init__(self, every_s: float | None = None) -> None:
        first = self._sample()
        self._samples = collections.deque([first] if first else [], maxlen=256)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if first is not None and every_s is not None:
            self._thread = threading.Thread(target=self._sampling, args=(every_s,), name="busy", daemon=True)
            self._thread.start()

    def _sampling(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            sample = self._sample()
            if sample is None:
                return
            self._samples.append(sample)

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        """(machine busy seconds, this process's CPU seconds, monotonic time), None without /proc/stat."""
        try:
            # the first line's fields: cpu user nice system idle iowait irq softirq steal ...
            with open("/proc/stat", encoding="ascii") as f:
                ticks = [int(x) for x in f.readline().split()[1:9]]
            hz = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None
        own = os.times()
        return (sum(ticks) - ticks[3] - ticks[4]) / hz, own.user + own.system, time.monotonic()

    def close(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def others(self, min_window_s: float = BUSY_WINDOW_S) -> float | None:
        """CPUs kept busy by other processes per second over the latest window of at least ``min_window_s``
        (sleeping out what is left of one since the start); None where there is no ``/proc/stat``."""
        self.close()
        if not self._samples:
            return None
        left = min_window_s - (time.monotonic() - self._samples[0][2])
        if left > 0:
            time.sleep(left)
        end = self._sample()
        if end is None:
            return None
        start = next(s for s in reversed(self._samples) if end[2] - s[2] >= min_window_s - 1e-3)
        busy, own, elapsed = (b - a for a, b in zip(start, end, strict=True))
        return max(0.0, (busy - own) / max(elapsed, 1e-3))


def busy_cpus_now(window_s: float = BUSY_WINDOW_S, since: BusyMeter | None = None) -> float | None:
    """How many CPUs other processes keep busy: over the window since ``since`` started (at least
    ``window_s``), or over ``window_s`` from now; None where there is no ``/proc/stat``."""
    return (since or BusyMeter()).others(window_s)


def auto_threads(pack_bytes: int, current: int, since: BusyMeter | None = None) -> int:
    """``default_threads`` for this machine now: CPU affinity and what keeps the CPUs busy.

    Where the kernel says (``busy_cpus_now``), the other processes' use of the CPUs over the latest quarter
    second that ``since`` measured (the worker starts it before its imports) or the next one, plus half a CPU for this process (so a core that other work keeps under half busy counts as
    free); elsewhere the 1-minute load average, which counts this process too but lags by a minute: a gate
    run right after other work would get one thread on an idle machine. Machine-wide figures are scaled to
    the share of the CPUs this process may use.
    """
    if pack_bytes < SMALL_PACK_BYTES:  # one thread whatever the CPUs do: nothing to measure
        return 1
    total = os.cpu_count() or 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    others = busy_cpus_now(since=since)
    if others is not None:
        busy = others + 0.5
    else:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # not available on this platform
            busy = 0.0
    return default_threads(pack_bytes, current=current, cpus=cpus, busy_cpus=busy * cpus / max(total, cpus))


def _fingerprint(model: Any) -> dict[str, Any]:
    """``{"fingerprint": ...}``, or ``{"fingerprint": None, "fingerprint_error": why}``."""
    from model_core.behaviour import fingerprint

    try:
        return {"fingerprint": fingerprint(model)}
    except (ValueError, RuntimeError) as e:
        return {"fingerprint": None, "fingerprint_error": str(e)[:300]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_core.worker")
    parser.add_argument("pack_dir", type=Path)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--time-budget", type=float, default=300.0)
    parser.add_argument("--memory-bytes", type=int, default=None)
    parser.add_argument("--overhead-bytes", type=int, default=2 * 1024**3)
    parser.add_argument("--allow-root", action="append", default=[])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--manifest-max-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--max-shards", type=int, default=4096)
    parser.add_argument("--header-max-bytes", type=int, default=100_000_000)
    parser.add_argument("--filename-max-len", type=int, default=255)
    args = parser.parse_args(argv)
    global _RESERVE
    try:
        result = run(args)
    except BaseException as e:
        _RESERVE = bytearray(0)  # give the memory back so the report can be written
        if _is_oom(e):
            result = {
                "verdict": "out_of_memory",
                "reason": f"the validation ran out of memory: {str(e)[:300]}",
            }
        else:
            result = {
                "verdict": "crashed",
                "reason": f"the validation raised {type(e).__name__}: {str(e)[:300]}",
                "traceback": traceback.format_exc()[-3000:],
            }
    tmp = args.result.with_name(args.result.name + ".tmp")
    tmp.write_text(json.dumps(result, default=str), encoding="utf-8")
    os.replace(tmp, args.result)
    return EXIT_CODES[result["verdict"]]


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The report is written: skip the interpreter's teardown of torch and the model, which took ~0.7 s
    # after a 0.85 GB pack's checks (the supervisor waits for the exit status).
    os._exit(code)
