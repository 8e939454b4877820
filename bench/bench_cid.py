"""``modelpack cid`` as users run it: whole processes, startup included, against one sha256 pass (issue #17).

Same file, fresh processes, interleaved runs (a, b, a, b, ...), best and median of ``--runs`` each:
(a) one sha256 pass: ``python -c`` (this interpreter) reading the file into an 8 MiB buffer -- the baseline
(b) ``modelpack cid FILE``: the venv's console script                            -- goal (a)/(b) >= 1.2
Then startup alone, best of ``--startup-runs``: ``python -c pass`` against ``modelpack --version``,
``modelpack cid EMPTY_FILE`` and ``modelpack --help``. CPU seconds are the children's user + system time.
``--busy`` keeps the other core busy (a spinning child) while (a) and (b) run, to show that case too.

``--in-memory`` runs the older table instead: CID computation per import profile over bytes in memory
(no process, no disk), as ratios to one ``hashlib.sha256`` pass in the same run; ``workers=1`` shows what
the second core buys.

Usage: .venv/bin/python bench/bench_cid.py [--size-mib 1024] [--runs 5] [--file PATH] [--dir /tmp] [--busy]
       .venv/bin/python bench/bench_cid.py --in-memory [--size-mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_ingest import make_file  # the same random test file

MIB = 1024 * 1024

SHA256_PASS = """\
import hashlib, sys
h = hashlib.sha256()
buf = bytearray(8 * 1024 * 1024)
view = memoryview(buf)
with open(sys.argv[1], "rb", buffering=0) as f:
    while n := f.readinto(buf):
        h.update(view[:n])
print(h.hexdigest())
"""


def modelpack_script() -> list[str]:
    """The venv's ``modelpack`` console script (what a user runs); ``python -m registry`` without one."""
    script = Path(sys.executable).parent / "modelpack"
    if script.exists():
        return [str(script)]
    print(f"note: no console script at {script}; running {sys.executable} -m registry", file=sys.stderr)
    return [sys.executable, "-m", "registry"]


def run_once(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, children's CPU seconds, stdout) of one fresh process; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{cmd!r} exited {out.returncode}: {out.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


@contextmanager
def other_core_busy(enabled: bool) -> Iterator[None]:
    """A child spinning on the CPU while the block runs (``--busy``)."""
    if not enabled:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def row(name: str, walls: list[float], cpus: list[float], base: float | None = None) -> None:
    best, median = min(walls), statistics.median(walls)
    ratio = f"{base / best:10.2f}" if base else f"{'':>10}"
    print(f"{name:34} {best:7.3f} {median:7.3f} {min(cpus):7.3f} {ratio}")


def whole_processes(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cid-", dir=args.dir))
    try:
        if args.file is not None:
            path = args.file
        else:
            path = tmp / "data.bin"
            make_file(path, args.size_mib * MIB)
        size_mib = path.stat().st_size / MIB
        empty = tmp / "empty.bin"
        empty.touch()
        sha_cmd = [sys.executable, "-c", SHA256_PASS, str(path)]
        cid_cmd = [*modelpack_script(), "cid", str(path)]
        run_once(sha_cmd)  # warm the page cache and both interpreters' bytecode caches
        cid = run_once(cid_cmd)[2].strip()

        walls: dict[str, list[float]] = {"a": [], "b": []}
        cpus: dict[str, list[float]] = {"a": [], "b": []}
        with other_core_busy(args.busy):
            for _ in range(args.runs):
                for key, cmd in (("a", sha_cmd), ("b", cid_cmd)):
                    wall, cpu, _out = run_once(cmd)
                    walls[key].append(wall)
                    cpus[key].append(cpu)

        busy = ", the other core kept busy" if args.busy else ""
        print(
            f"{size_mib:.0f} MiB file, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}{busy}; "
            f"{args.runs} interleaved runs each; CID {cid}"
        )
        print(f"{'whole process':34} {'best s':>7} {'median':>7} {'CPU s':>7} {'(a)/this':>10}")
        base = min(walls["a"])
        row("(a) python -c: one sha256 pass", walls["a"], cpus["a"], base)
        row("(b) modelpack cid FILE", walls["b"], cpus["b"], base)
        median_ratio = statistics.median(walls["a"]) / statistics.median(walls["b"])
        print(f"ratio (a)/(b): best {base / min(walls['b']):.2f}, median {median_ratio:.2f} (goal >= 1.2)")

        script = modelpack_script()
        startup = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "modelpack --version": [*script, "--version"],
            "modelpack cid EMPTY_FILE": [*script, "cid", str(empty)],
            "modelpack --help": [*script, "--help"],
        }
        times: dict[str, list[float]] = {name: [] for name in startup}
        for _ in range(args.startup_runs):
            for name, cmd in startup.items():
                times[name].append(run_once(cmd)[0])
        floor = min(times["python -c pass"])
        print(f"\n{'startup only':34} {'best s':>7} {'median':>7} {'+ over python':>14}")
        for name, ts in times.items():
            print(f"{name:34} {min(ts):7.3f} {statistics.median(ts):7.3f} {min(ts) - floor:14.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def in_memory(args: argparse.Namespace) -> None:
    from pinner.unixfs import PROFILES, PipelineConfig, UnixfsParams, compute_cid, hash_file

    size_mib = args.size_mib
    data = os.urandom(size_mib * MIB)
    one_worker = PipelineConfig(workers=1)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("hashlib.sha256 (baseline)", lambda: hashlib.sha256(data).digest()),
        ("cid v0 (default)", lambda: compute_cid(io.BytesIO(data), UnixfsParams())),
        ("cid v0, 1 worker", lambda: compute_cid(io.BytesIO(data), UnixfsParams(), config=one_worker)),
        ("cid v1 (raw leaves)", lambda: compute_cid(io.BytesIO(data), UnixfsParams(cid_version=1))),
        ("cid unixfs-v1-2025", lambda: compute_cid(io.BytesIO(data), PROFILES["unixfs-v1-2025"])),
        ("cid v0 + file sha256", lambda: hash_file(io.BytesIO(data), UnixfsParams())),
    ]
    base = 0.0
    print(f"{size_mib} MiB in memory, {os.cpu_count()} cores, best of {args.repeat}")
    print(f"{'case':28} {'seconds':>8} {'MiB/s':>8} {'x baseline':>10}")
    for name, fn in cases:
        secs = best(fn, args.repeat)
        base = base or secs
        print(f"{name:28} {secs:8.3f} {size_mib / secs:8.0f} {base / secs:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=None, help="default 1024 (256 with --in-memory)")
    ap.add_argument("--runs", type=int, default=5, help="interleaved whole-process runs of (a) and (b)")
    ap.add_argument("--startup-runs", type=int, default=10)
    ap.add_argument("--file", type=Path, default=None, help="hash this file instead of a random one")
    ap.add_argument("--dir", default=None, help="where the random file goes (default: the temp dir)")
    ap.add_argument("--busy", action="store_true", help="keep the other core busy during (a) and (b)")
    ap.add_argument("--in-memory", action="store_true", help="the per-profile in-memory table instead")
    ap.add_argument("--repeat", type=int, default=3, help="--in-memory: best of this many")
    args = ap.parse_args()
    if args.in_memory:
        args.size_mib = args.size_mib or 256
        in_memory(args)
    else:
        args.size_mib = args.size_mib or 1024
        whole_processes(args)


if __name__ == "__main__":
    main()
