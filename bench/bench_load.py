"""Benchmark: loading a ~0.9 GB fp32 pack (4 shards) our way vs the seed's way, each in a fresh process.

Measures, as medians of ``--repeats`` fresh processes (page cache warm, so this is CPU cost, not disk):
  (a) read + sha256 of every shard in one sequential pass   -- the floor any verifying loader pays
  (b) model_core.loader.load_pack: verify + zero-copy build  -- ours
  (c) the seed's path: random init (twice, as the seed did), then load_file + load_state_dict, no hashing
  (d) load_pack + the whole smoke suite
and the peak RSS of (b), (c), (d) against a process that only imports torch and model_core.
Goals (issue #4): (b) <= 1.2 x (a); RSS(b) <= 1.3 x pack + bare import; (b) >= 3 x faster than (c).

    .venv/bin/python bench/bench_load.py [--dir /tmp/modelpack-bench] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_CONFIG = {
    "vocab_size": 32000,
    "d_model": 1024,
    "num_layers": 16,
    "num_heads": 16,
    "num_kv_heads": 4,
    "dim_ff": 2816,
    "max_seq_len": 2048,
}


def peak_rss() -> int:
    """This process's peak RSS (VmHWM; ru_maxrss would carry over the parent's peak across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_pack(pack: Path) -> None:
    import torch

    from model_core.config import ModelConfig
    from model_core.model import Transformer
    from model_core.packbuild import plan_shards, write_pack

    cfg = ModelConfig(**BENCH_CONFIG)  # type: ignore[arg-type]
    torch.manual_seed(0)
    state = Transformer(cfg).state_dict()
    stored = {k: t for k, t in state.items() if k != "lm_head.weight"}
    # The smallest shard size that gives 4 shards with the builder's in-order packing.
    low, high = (
        max(t.numel() * t.element_size() for t in stored.values()),
        sum(t.numel() * t.element_size() for t in stored.values()),
    )
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if len(plan_shards(stored, mid)) <= 4 else (mid + 1, high)
    write_pack(state, cfg, pack, max_shard_bytes=low, cid_of=lambda p: "")


def measure(kind: str, pack: Path) -> dict[str, Any]:
    """Runs in a fresh process; returns seconds for the measured step and the process's peak RSS."""
    t0 = time.perf_counter()
    if kind == "bare":
        import torch

        import model_core.loader  # noqa: F401

        return {"seconds": 0.0, "rss": peak_rss()}
    if kind == "a":
        manifest = json.loads((pack / "manifest.json").read_text())
        t0 = time.perf_counter()
        buf = bytearray(16 * 1024 * 1024)
        view = memoryview(buf)
        for shard in manifest["shards"]:
            h = hashlib.sha256()
            with open(pack / shard["filename"], "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
            assert "sha256:" + h.hexdigest() == shard["sha256"]
        return {"seconds": time.perf_counter() - t0, "rss": peak_rss()}
    import torch

    from model_core.loader import load_pack

    if kind in ("b", "d"):
        t0 = time.perf_counter()
        loaded = load_pack(pack)
        out: dict[str, Any] = {"seconds": time.perf_counter() - t0}
        if kind == "d":
            from model_core.smoke import run_smoke

            t1 = time.perf_counter()
            report = run_smoke(loaded.model)
            out["smoke_seconds"] = time.perf_counter() - t1
            out["seconds"] = time.perf_counter() - t0
            out["passed"] = report["passed"]
        out["rss"] = peak_rss()
        return out
    if kind == "c":
        from safetensors.torch import load_file

        from model_core.config import ModelConfig
        from model_core.model import Transformer

        manifest = json.loads((pack / "manifest.json").read_text())
        t0 = time.perf_counter()
        cfg, _ = ModelConfig.from_dict(manifest["config"])
        model = Transformer(cfg)  # random init
        with torch.no_grad():  # the seed's second init of every matrix
            for name, p in model.named_parameters():
                if p.dim() > 1 and "embed" not in name:
                    torch.nn.init.xavier_uniform_(p)
        state: dict[str, torch.Tensor] = {}
        for shard in manifest["shards"]:
            state.update(load_file(str(pack / shard["filename"])))
        state.setdefault("lm_head.weight", state["embed.weight"])
        model.load_state_dict(state, strict=True)
        return {"seconds": time.perf_counter() - t0, "rss": peak_rss()}
    raise SystemExit(f"unknown measurement {kind!r}")


def run_fresh(kind: str, pack: Path, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--dir", str(pack)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/modelpack-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS for the measured processes"
    )
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir)))
        return
    if not (args.dir / "manifest.json").exists():
        print(f"writing the benchmark pack to {args.dir} ...", flush=True)
        make_pack(args.dir)  # each measurement below runs in a fresh process
    manifest = json.loads((args.dir / "manifest.json").read_text())
    pack_bytes = sum(s["size"] for s in manifest["shards"])
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    load_before = os.getloadavg()[0]
    run_fresh("a", args.dir, env)  # warm the page cache: every figure is CPU cost, not disk
    kinds = ("bare", "a", "b", "c", "d")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for _ in range(args.repeats):  # round-robin, so a burst of load on the machine hits every kind
        for kind in kinds:
            runs[kind].append(run_fresh(kind, args.dir, env))
    assert all(r["passed"] for r in runs["d"]), "the smoke suite failed on the benchmark pack"
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0] if f != "passed"} for k, v in runs.items()}
    a, b, c, d, bare = (med[k] for k in (*kinds[1:], "bare"))
    mib = 1024**2
    print(
        f"pack: {len(manifest['shards'])} shards, {pack_bytes / mib:.0f} MiB; bare import RSS {bare['rss'] / mib:.0f} MiB"
    )
    print(
        f"medians of {args.repeats} fresh processes; threads={args.threads or 'default'}; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"(a) read + sha256, one pass    {a['seconds']:7.3f} s")
    print(f"(b) load_pack (verify + build) {b['seconds']:7.3f} s   peak RSS {b['rss'] / mib:6.0f} MiB")
    print(f"(c) seed path (init + load)    {c['seconds']:7.3f} s   peak RSS {c['rss'] / mib:6.0f} MiB")
    print(
        f"(d) load_pack + smoke suite    {d['seconds']:7.3f} s   peak RSS {d['rss'] / mib:6.0f} MiB"
        f"   (smoke alone {d['smoke_seconds']:.3f} s)"
    )
    over = (b["rss"] - bare["rss"]) / pack_bytes
    print(f"(b)/(a) = {b['seconds'] / a['seconds']:.2f}   goal <= 1.2")
    print(f"(RSS(b) - bare import) / pack = {over:.2f}   goal <= 1.3")
    print(f"(c)/(b) = {c['seconds'] / b['seconds']:.2f}   goal >= 3")


if __name__ == "__main__":
    main()
