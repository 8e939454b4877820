"""Registry API benchmark (issue #5), every figure beside a baseline measured in the same run.

(a) 32 keep-alive connections for ``--duration`` s each against: a bare aiohttp handler returning a constant
    JSON (baseline), the pointer resolve ``GET /v1/models/acme/tiny/pointers/latest``, the pack detail
    ``GET /v1/packs/{cid}``, and the resolve with the read cache off, on SQLite; ``--rounds`` interleaved
    rounds, medians reported. Reports requests/s, the ratio to the baseline (goal >= 0.5) and p99 latency
    (goal < 50 ms). Server and load generator are separate processes sharing the machine's cores.
(b) Upload of a ``--size-mib`` shard over loopback (PUT /v1/blobs/{cid}, fsync on) against the in-process
    ``FsBlockstore.ingest_file`` of the same file (the ingest benchmark of #3), ``--upload-repeat`` interleaved
    rounds, a fresh daemon each, bests: throughput ratio (goal >= 0.9, #17; #5's was 0.5) and the server's
    peak RSS growth during the upload (goal < 64 MiB). Each timed run follows the same write and delete of a
    scratch file of the shard's size, so both find the kernel's free pages alike (see ``_warm_pages``), and the
    CPU seconds of each side are reported: the ingest's, and the daemon's and the client's during the upload.
(c) The Postgres scale figures (resolve and model-list p99 at 10k and 1M packs) moved to ``bench/bench_scale.py``,
    which uses this module's server processes, load generator and seeding.

    .venv/bin/python bench/bench_api.py [--duration 10] [--size-mib 1024] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 1024 * 1024
CONNECTIONS = 32


# --------------------------------------------------------------------------- server processes


def serve_bare(port: int) -> None:
    from aiohttp import web

    body = json.dumps({"namespace": "acme", "model": "tiny", "tag": "latest", "cid": "bafkrei" + "a" * 52})

    async def constant(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/constant", constant)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=lambda *_: print("READY", flush=True)
    )


def serve_registry(data_dir: str, db_url: str, port: int, cache_ttl_s: float = 1.0) -> None:
    import logging

    from aiohttp import web

    from registry.app.daemon import build_app
    from registry.settings import load_settings

    logging.getLogger("modelpack.access").setLevel(logging.WARNING)
    settings = load_settings(
        None,
        storage={"data_dir": data_dir},
        database={"url": db_url},
        server={"port": port, "access_log": False, "read_cache_ttl_s": cache_ttl_s},
        jobs={"workers": 0},
    )
    web.run_app(
        build_app(settings, tune_heap=True),  # as `modelpack serve` runs it
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=lambda *_: print("READY", flush=True),
    )


class Server:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "READY" not in line:
            raise RuntimeError(f"server did not start: {line!r}")
        self.ps = psutil.Process(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- load generator


async def _load(urls: list[str], duration: float, connections: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration
    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def worker(seed: int) -> None:
            nonlocal errors
            rnd = random.Random(seed)
            while time.perf_counter() < stop_at:
                url = urls[rnd.randrange(len(urls))]
                t0 = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


def load(urls: list[str], duration: float) -> dict[str, float]:
    """Runs the load generator in its own process (so it does not share the GIL with us); the URLs go on its
    stdin (thousands of them exceed the 128 KiB limit of one command-line argument)."""
    out = subprocess.run(
        [sys.executable, __file__, "_load", str(duration)],
        input=json.dumps(urls),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


# --------------------------------------------------------------------------- seeding


async def seed_local(db_url: str) -> str:
    from registry.accounts.auth import AuthService
    from registry.db.engine import create_engine, session_factory
    from registry.db.migrate import upgrade

    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        issued = await AuthService(session_factory(engine)).create_token("bench", namespaces=["acme"])
        return issued.token
    finally:
        await engine.dispose()


def seed_packs(url: str, token: str, versions: int) -> str:
    """``versions`` packs of acme/tiny; the newest one's CID."""
    return seed_pack_list(url, token, versions)[-1]


def seed_pack_list(url: str, token: str, versions: int) -> list[str]:
    """``versions`` packs of acme/tiny (one shard, shared), oldest first; "latest" names the newest."""
    import hashlib
    import io

    from pinner.unixfs import hash_file
    from registry.client import RegistryClient

    data = os.urandom(300_000)
    cid = str(hash_file(io.BytesIO(data)).cid)
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        with RegistryClient(url, token) as client:
            client.upload_blob(cid, Path(f.name))
            cids = []
            for v in range(versions):
                manifest = {
                    "format": "safetensors",
                    "model_name": "tiny",
                    "model_version": f"1.{v}",
                    "config": {"d_model": 64},
                    "shards": [
                        {
                            "filename": "model.safetensors",
                            "cid": cid,
                            "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
                            "size": len(data),
                        }
                    ],
                }
                cids.append(client.publish("acme/tiny", {"manifest": manifest})["cid"])
    return cids


# --------------------------------------------------------------------------- (a) and (b)


def bench_requests(work: Path, duration: float, rounds: int) -> dict[str, Any]:
    """Interleaved rounds (baseline, resolve, pack, resolve without the read cache); medians reported."""
    data_dir = work / "reg"
    db_url = f"sqlite+aiosqlite:///{data_dir / 'index.sqlite3'}"
    data_dir.mkdir(parents=True)
    token = asyncio.run(seed_local(db_url))
    bare_port, reg_port, nocache_port = free_port(), free_port(), free_port()
    bare = Server("_bare", str(bare_port))
    reg = Server("_registry", str(data_dir), db_url, str(reg_port))
    nocache = Server("_registry", str(data_dir), db_url, str(nocache_port), "0")
    try:
        base = f"http://127.0.0.1:{reg_port}"
        pack_cid = seed_packs(base, token, 20)
        targets = {
            "baseline": [f"http://127.0.0.1:{bare_port}/constant"],
            "resolve": [f"{base}/v1/models/acme/tiny/pointers/latest"],
            "pack": [f"{base}/v1/packs/{pack_cid}"],
            "resolve_nocache": [f"http://127.0.0.1:{nocache_port}/v1/models/acme/tiny/pointers/latest"],
        }
        for urls in targets.values():
            load(urls, 1.0)  # warm-up
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
        for _ in range(rounds):
            for key, urls in targets.items():
                runs[key].append(load(urls, duration))
    finally:
        for srv in (bare, reg, nocache):
            srv.stop()
    out: dict[str, Any] = {}
    for key, results in runs.items():
        out[key] = {
            m: statistics.median(r[m] for r in results) for m in ("rps", "p50_ms", "p99_ms", "errors")
        }
        out[key]["rounds_rps"] = [round(r["rps"]) for r in results]
    return out


def bench_upload(work: Path, size_mib: int, repeat: int = 3) -> dict[str, Any]:
    """``repeat`` interleaved rounds of (in-process ingest, upload to a fresh daemon) of one file; bests, and
    each side's CPU seconds in its best round."""
    from pinner.unixfs import hash_file

    src = work / "shard.bin"
    with src.open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))
    digest = hash_file(src)
    rounds = [_upload_round(work / f"round{i}", src, digest) for i in range(repeat)]
    ingest = min(rounds, key=lambda r: r["ingest_s"])
    upload = min(rounds, key=lambda r: r["upload_s"])
    return {
        "size_mib": size_mib,
        "ingest_s": ingest["ingest_s"],
        "upload_s": upload["upload_s"],
        "rounds": [[round(r["ingest_s"], 3), round(r["upload_s"], 3)] for r in rounds],
        "ratio": ingest["ingest_s"] / upload["upload_s"],
        "ingest_cpu_s": ingest["ingest_cpu_s"],
        "upload_server_cpu_s": upload["server_cpu_s"],
        "upload_client_cpu_s": upload["client_cpu_s"],
        "server_rss_before_mib": max(r["rss0"] for r in rounds) / MIB,
        "server_rss_peak_growth_mib": max(r["rss_growth"] for r in rounds) / MIB,
    }


def _warm_pages(work: Path, size: int) -> None:
    """Writes and deletes ``size`` bytes just before a timed run, so that both runs find the kernel's free pages
    in the same state. On this VM, pages freed more than a second or two earlier have gone back to the host, and
    faulting them in again costs ~2 s of system time per GiB written (the measurement is in bench/README.md):
    without this, whichever run followed a pause (the upload, behind its daemon's start) paid for it."""
    scratch = work / "warm.bin"
    block = b"\0" * (8 * MIB)
    with scratch.open("wb") as f:
        for _ in range(-(-size // len(block))):
            f.write(block)
    scratch.unlink()


def _cpu() -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


def _upload_round(work: Path, src: Path, digest: Any) -> dict[str, Any]:
    """In-process ingest s, upload s, the CPU of each and the server's RSS, into fresh stores."""
    from pinner.blockstore import FsBlockstore
    from registry.client import RegistryClient

    size = src.stat().st_size
    store_dir = work / "ingest-baseline"
    work.mkdir(parents=True)
    _warm_pages(work, size)
    cpu0, t0 = _cpu(), time.perf_counter()
    FsBlockstore(store_dir).ingest_file(src, expected_cid=digest.cid)
    ingest_s, cpu1 = time.perf_counter() - t0, _cpu()
    shutil.rmtree(store_dir)
    out: dict[str, Any] = {"ingest_s": ingest_s, "ingest_cpu_s": [cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]]}

    data_dir = work / "upload"
    data_dir.mkdir(parents=True)
    db_url = f"sqlite+aiosqlite:///{data_dir / 'index.sqlite3'}"
    token = asyncio.run(seed_local(db_url))
    port = free_port()
    server = Server("_registry", str(data_dir), db_url, str(port))
    try:
        rss0 = server.ps.memory_info().rss
        peak = rss0
        done = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, server.ps.memory_info().rss)
                time.sleep(0.02)

        with RegistryClient(f"http://127.0.0.1:{port}", token) as client:
            client.whoami()  # the connection is open and the daemon has served a request before the clock starts
            _warm_pages(work, size)
            watcher = threading.Thread(target=watch)
            watcher.start()
            s0, cpu0, t0 = server.ps.cpu_times(), _cpu(), time.perf_counter()
            info = client.upload_blob(str(digest.cid), src, sha256=digest.sha256_hex)
            upload_s, cpu1, s1 = time.perf_counter() - t0, _cpu(), server.ps.cpu_times()
        done.set()
        watcher.join()
        assert info["cid"] == str(digest.cid)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    out.update(
        upload_s=upload_s,
        server_cpu_s=[s1.user - s0.user, s1.system - s0.system],
        client_cpu_s=[cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]],  # the RSS watcher's polls included
        rss0=rss0,
        rss_growth=peak - rss0,
    )
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        cmd = sys.argv[1]
        if cmd == "_bare":
            serve_bare(int(sys.argv[2]))
        elif cmd == "_registry":
            serve_registry(
                sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
            )
        elif cmd == "_load":
            urls = json.loads(sys.stdin.read())
            print(json.dumps(asyncio.run(_load(urls, float(sys.argv[2]), CONNECTIONS))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--skip-upload", action="store_true")
    ap.add_argument("--upload-repeat", type=int, default=3, help="interleaved ingest/upload rounds (best of)")
    ap.add_argument("--skip-requests", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelpack-bench-api-", dir=args.dir))
    report: dict[str, Any] = {}
    try:
        r = report["requests"] = (
            {} if args.skip_requests else bench_requests(work, args.duration, args.rounds)
        )
        base = r["baseline"]["rps"] if r else 0.0
        if r:
            print(f"(a) bare aiohttp constant JSON: {base:8.0f} req/s  p99 {r['baseline']['p99_ms']:.1f} ms")
            for key, label in (
                ("resolve", "pointer resolve"),
                ("pack", "pack detail GET"),
                ("resolve_nocache", "resolve, read cache off"),
            ):
                x = r[key]
                print(
                    f"(a) {label:28s} {x['rps']:8.0f} req/s  ratio {x['rps'] / base:.2f} (goal >= 0.5)  "
                    f"p50 {x['p50_ms']:.1f} ms  p99 {x['p99_ms']:.1f} ms (goal < 50)  rounds {x['rounds_rps']}"
                )
        if not args.skip_upload:
            u = report["upload"] = bench_upload(work, args.size_mib, args.upload_repeat)
            print(
                f"(b) {u['size_mib']} MiB: ingest in-process {u['ingest_s']:.2f} s, upload over loopback "
                f"{u['upload_s']:.2f} s  ratio {u['ratio']:.2f} (goal >= 0.9)  rounds {u['rounds']}  "
                f"server RSS +{u['server_rss_peak_growth_mib']:.0f} MiB (from {u['server_rss_before_mib']:.0f})"
            )
            cpu = " + ".join(
                f"{name} {sum(u[key]):.2f} (sys {u[key][1]:.2f})"
                for name, key in (("server", "upload_server_cpu_s"), ("client", "upload_client_cpu_s"))
            )
            print(
                f"(b) CPU s, user+sys: ingest {sum(u['ingest_cpu_s']):.2f} (sys {u['ingest_cpu_s'][1]:.2f}); "
                f"upload {cpu}"
            )
        print(json.dumps(report, indent=2, default=str), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
