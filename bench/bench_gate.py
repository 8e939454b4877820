"""Benchmark (issue #8): publish -> curated on the real stack, by stage, and the local gate vs read + sha256.

(1) End to end: a ``modelpack serve`` daemon (SQLite) with three js-ipfs peers; ``modelpack publish`` of a
    signed pack, then the daemon replicates (min = max = 3), validates and curates on its own. Stages from
    the daemon's own records: ingest (the publish command: upload + verify + index), replicate (publish ->
    every unit pinned on 3 peers), validate (the validation report's start -> finish: gather + sandbox),
    curate (the later of replicated/validated -> the curated state). Replication and validation overlap.
(2) ``modelpack gate DIR`` (local: manifest, sha256 + CID of every shard, the sandboxed load + smoke suite)
    and the whole sandbox alone (``python -m model_core.validate PACK``, as the daemon's validation runs it)
    against the bare read + sha256 of the shards and #17's baseline (``import torch`` + read + sha256), each in
    a fresh process, page cache warm, medians.

    .venv/bin/python bench/bench_gate.py [--preset bench|small] [--dir /tmp/modelpack-bench-gate]
        [--repeats 3] [--skip-e2e] [--other-tree /tmp/wt-old]

``bench`` is issue #4's ~0.8 GiB fp32 pack (vocab 32000, d_model 1024, 16 layers, 16/4 heads, dim_ff 2816).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.stack import Daemon, clean_env, cli, wait_until  # noqa: E402
from tests.ipfs_testnode.peers import running_peers  # noqa: E402
from tests.registry.gate import packs  # noqa: E402


def build_pack(preset: str, out: Path) -> None:
    if preset == "bench":
        spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "bench_load.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.make_pack(out)
        for s in packs.manifest_of(out)["shards"]:  # bench_load leaves CIDs empty: compute them
            packs.reseal(out, s["filename"])
    else:
        r = cli("demo-pack", str(out), "--preset", preset, "--name", "acme/bench")
        assert r.code == 0, r.err


def read_sha256(pack: Path) -> float:
    start = time.perf_counter()
    for s in packs.manifest_of(pack)["shards"]:
        h = hashlib.sha256()
        with (pack / s["filename"]).open("rb", buffering=0) as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
    return time.perf_counter() - start


def fresh(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def gate_in_tree(tree: Path, pack: Path) -> float:
    """``modelpack gate PACK`` with another checkout's code (its ``registry`` and ``model_core`` first on
    ``PYTHONPATH``, which the sandbox passes on to its worker); wall seconds."""
    env = {**clean_env(), "PYTHONPATH": str(tree)}
    code = "import sys; from registry.app.main import main; sys.exit(main())"
    start = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", code, "gate", str(pack), "--json"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return time.perf_counter() - start


def sandbox_process(pack: Path, tree: Path = ROOT) -> float:
    """The whole sandbox as the daemon's validation runs it: ``python -m model_core.validate PACK`` (the
    supervisor, its preflight and the limited worker: load, smoke suite, fingerprint), with ``tree``'s code
    first on ``PYTHONPATH``; wall seconds."""
    env = {**clean_env(), "PYTHONPATH": str(tree)}
    with tempfile.TemporaryDirectory(prefix="bench-gate-report-") as tmp:
        report = Path(tmp) / "report.json"
        start = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "model_core.validate", str(pack), "--report", str(report)],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
        )
        took = time.perf_counter() - start
        assert p.returncode == 0, p.stdout + p.stderr
    return took


def local_gate(pack: Path, repeats: int, other_tree: Path | None = None) -> dict[str, Any]:
    bare = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.bench_gate import read_sha256; from pathlib import Path; print(read_sha256(Path({str(pack)!r})))"
    # #17's baseline: a whole process doing a bare ``import torch`` and the same read + sha256 (wall time)
    with_torch = f"import torch; {bare}"
    fresh(bare)  # warm the page cache
    a, b, g, smoke, other, whole, other_whole = [], [], [], [], [], [], []
    for _ in range(repeats):
        if other_tree is not None:
            other.append(gate_in_tree(other_tree, pack))
            other_whole.append(sandbox_process(pack, other_tree))
        a.append(fresh(bare))
        start = time.perf_counter()
        fresh(with_torch)
        b.append(time.perf_counter() - start)
        start = time.perf_counter()
        r = cli("gate", str(pack), "--json", timeout=3600)
        g.append(time.perf_counter() - start)
        assert r.code == 0, r.out + r.err
        sandbox = next(c for c in json.loads(r.out)["checks"] if c["name"] == "sandbox")
        smoke.append(sandbox["seconds"])
        whole.append(sandbox_process(pack))
    compared = {}
    if other:
        compared = {
            "other_tree": str(other_tree),
            "other_gate_local_s": statistics.median(other),
            "other_ratio_to_torch_baseline": statistics.median(other) / statistics.median(b),
            "other_sandbox_process_s": statistics.median(other_whole),
            "other_sandbox_ratio_to_torch_baseline": statistics.median(other_whole) / statistics.median(b),
        }
    return {
        **compared,
        "read_sha256_s": statistics.median(a),
        "gate_local_s": statistics.median(g),
        "gate_sandbox_s": statistics.median(smoke),
        "ratio": statistics.median(g) / statistics.median(a),
        "torch_read_sha256_process_s": statistics.median(b),
        "ratio_to_torch_baseline": statistics.median(g) / statistics.median(b),
        # #17 item 6 (goal <= 2): the whole sandbox, a fresh ``python -m model_core.validate`` process
        "sandbox_process_s": statistics.median(whole),
        "sandbox_ratio_to_torch_baseline": statistics.median(whole) / statistics.median(b),
    }


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def end_to_end(pack: Path, work: Path) -> dict[str, Any]:
    db = work / "index.sqlite3"
    url = f"sqlite+aiosqlite:///{db}"
    assert cli("migrate", "--database-url", url).code == 0
    extra = {"MODELPACK_VALIDATION__MEMORY_BYTES": str(16 * 1024**3), "MODELPACK_JOBS__LEASE_S": "60"}
    daemon = Daemon(work / "data", url, work / "daemon.log", extra)
    with running_peers(work / "peers", 3, prefix="bench") as peers:
        daemon.start()
        try:
            admin = daemon.token("root", "--scope", "admin")
            alice = daemon.token("alice", "--namespace", "acme")
            daemon.add_peers(admin, peers)
            env = clean_env() | {"MODELPACK_REGISTRY": daemon.url, "MODELPACK_TOKEN": alice}
            assert cli("keygen", str(work / "k")).code == 0
            key_id = json.loads(cli("key", "add", str(work / "k.pub"), "--json", env=env).out)["key_id"]
            assert (
                cli("policy", "set", "acme", "--key", key_id, env=env | {"MODELPACK_TOKEN": admin}).code == 0
            )
            assert cli("sign", str(pack), "--key", str(work / "k")).code == 0
            t0 = time.time()
            r = cli("publish", str(pack), "--name", "acme/bench", "--json", env=env, timeout=3600)
            t_published = time.time()
            assert r.code == 0, r.err
            cid = json.loads(r.out)["cid"]
            t_replicated = 0.0

            def done() -> bool:
                nonlocal t_replicated
                if not t_replicated:
                    _, m = daemon.get(f"/v1/packs/{cid}/replicas")
                    if m.get("satisfied") and all(u["pinned"] >= 3 for u in m["units"]):
                        t_replicated = time.time()
                state = daemon.state(cid)["state"]
                assert state != "rejected", daemon.state(cid)
                return bool(t_replicated) and state == "curated"

            wait_until(done, 3600, "curated", daemon.tail)
            v = daemon.state(cid)["validation"]
            _, detail = daemon.get(f"/v1/packs/{cid}")
            at = {h["to"]: _t(h["at"]) for h in detail["history"]}
            v_start, v_end = _t(v["started_at"]), _t(v["finished_at"])
            return {
                "pack_bytes": sum(s["size"] for s in packs.manifest_of(pack)["shards"]),
                "ingest_s": t_published - t0,
                "replicate_s": t_replicated - t_published,
                "validate_s": v_end - v_start,
                "validate_sandbox_s": v["report"].get("wall_s"),
                "validate_start_after_publish_s": v_start - t_published,  # < 0: began before the CLI returned
                "curate_s": at["curated"] - max(v_end, t_replicated),
                "publish_to_curated_s": at["curated"] - t0,
            }
        finally:
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=["bench", "small", "tiny"], default="bench")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/modelpack-bench-gate"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--other-tree",
        type=Path,
        help="another checkout (e.g. a git worktree of an older commit) whose local gate runs in each repeat too",
    )
    args = parser.parse_args()
    pack = args.dir / f"pack-{args.preset}"
    if not (pack / "manifest.json").exists():
        print(f"writing the {args.preset} pack to {pack} ...", flush=True)
        build_pack(args.preset, pack)
    load = os.getloadavg()[0]
    out: dict[str, Any] = {"preset": args.preset, "load_avg_1m": load}
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
            out["end_to_end"] = end_to_end(pack, Path(tmp))
    out["local_gate"] = local_gate(pack, args.repeats, args.other_tree)
    out["load_avg_1m_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
