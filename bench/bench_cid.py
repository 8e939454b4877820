"""CID computation throughput per import profile, as ratios to one hashlib.sha256 pass in the same run.

Data is in memory (no disk), so this isolates hashing and tree building; ``workers=1`` shows what the
second core buys. Usage: .venv/bin/python bench/bench_cid.py [--size-mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import time
from collections.abc import Callable

from pinner.unixfs import PROFILES, PipelineConfig, UnixfsParams, compute_cid, hash_file

MIB = 1024 * 1024


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = os.urandom(args.size_mib * MIB)
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
    print(f"{args.size_mib} MiB in memory, {os.cpu_count()} cores, best of {args.repeat}")
    print(f"{'case':28} {'seconds':>8} {'MiB/s':>8} {'x baseline':>10}")
    for name, fn in cases:
        secs = best(fn, args.repeat)
        base = base or secs
        print(f"{name:28} {secs:8.3f} {args.size_mib / secs:8.0f} {base / secs:10.2f}")


if __name__ == "__main__":
    main()
