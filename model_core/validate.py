"""``python -m model_core.validate PACK_DIR --report OUT.json``: validate a pack in a sandboxed child.

This module never imports torch; the registry's gate runs it as a subprocess and reads the report.
Exit codes: 0 pass, 10 invalid_pack (including a bad ``evaluation`` block: one sentence naming the
field), 11 smoke_failed, 12 out_of_memory, 13 timed_out, 14 crashed, 15 behavior_failed (the model
loaded and passed the smoke suite but failed a check of the manifest's ``evaluation``: the reason names
the prompt, the expectation and what the model produced), 2 usage error. The report is written in every
case but a usage error; when the model loaded it carries a behavioural ``fingerprint``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_core.errors import ModelCoreError
from model_core.sandbox import SandboxLimits, validate_pack


def main(argv: list[str] | None = None) -> int:
    defaults = SandboxLimits()
    parser = argparse.ArgumentParser(
        prog="python -m model_core.validate",
        description="Load, smoke-test and behaviour-check a ModelPack folder in a resource-limited child "
        "process.",
        epilog="exit codes: 0 pass, 10 invalid_pack, 11 smoke_failed, 12 out_of_memory, 13 timed_out, "
        "14 crashed, 15 behavior_failed, 2 usage",
    )
    parser.add_argument("pack_dir", type=Path, help="folder holding manifest.json and the shards")
    parser.add_argument("--report", type=Path, required=True, help="where to write the JSON report")
    parser.add_argument("--memory-bytes", type=int, default=defaults.memory_bytes, help="address-space limit")
    parser.add_argument("--cpu-seconds", type=int, default=defaults.cpu_seconds, help="CPU-time limit")
    parser.add_argument("--wall-seconds", type=float, default=defaults.wall_seconds, help="wall-clock limit")
    parser.add_argument(
        "--time-budget", type=float, default=defaults.time_budget_s, help="smoke suite budget"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the child")
    parser.add_argument(
        "--allow-root",
        action="append",
        default=[],
        help="a folder symlinked shards may point into (repeatable)",
    )
    parser.add_argument(
        "--overhead-bytes",
        type=int,
        default=defaults.overhead_bytes,
        help="memory assumed besides the weights when sizing a pack against --memory-bytes",
    )
    parser.add_argument("--manifest-max-bytes", type=int, default=defaults.manifest_max_bytes)
    parser.add_argument("--max-shards", type=int, default=defaults.max_shards)
    parser.add_argument(
        "--header-max-bytes",
        type=int,
        default=defaults.header_max_bytes,
        help="largest safetensors header accepted",
    )
    parser.add_argument("--filename-max-len", type=int, default=defaults.filename_max_len)
    parser.add_argument(
        "--sandbox-user", default=defaults.user, help="whom the worker runs as when this process is root"
    )
    parser.add_argument(
        "--worker-python",
        default=None,
        help="the worker's interpreter (same Python version); default: this one, or the host's own when "
        "the sandbox user cannot start this one",
    )
    args = parser.parse_args(argv)
    try:
        limits = SandboxLimits(
            memory_bytes=args.memory_bytes,
            cpu_seconds=args.cpu_seconds,
            wall_seconds=args.wall_seconds,
            time_budget_s=args.time_budget,
            threads=args.threads,
            allowed_roots=tuple(str(Path(r).resolve()) for r in args.allow_root),
            overhead_bytes=args.overhead_bytes,
            manifest_max_bytes=args.manifest_max_bytes,
            max_shards=args.max_shards,
            header_max_bytes=args.header_max_bytes,
            filename_max_len=args.filename_max_len,
            user=args.sandbox_user,
            worker_python=args.worker_python,
        )
    except ModelCoreError as e:
        parser.error(e.message)
    try:
        report = validate_pack(args.pack_dir, args.report, limits)
    except OSError as e:
        parser.error(f"cannot write the report to {args.report}: {e.strerror or e}")
    print(f"{report['verdict']}: {report['reason']}", file=sys.stderr)
    return int(report["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
