"""Pinning Service API benchmark (issue #14 "Speed"), every figure beside a baseline measured in the same run.

(a) ``POST /pins`` (a new CID each request, 202 + PinStatus) for ``--duration`` s over ``--connections``
    keep-alive connections against a bare aiohttp handler that parses the same body and answers a constant
    PinStatus (baseline); ``--rounds`` interleaved rounds, medians. Goal: rate >= 0.3x the baseline.
(b) ``GET /pins?limit=1000`` p99 with 1k pins and with 100k pins of the requesting publisher (rows inserted
    directly), ``--get-connections`` connections. Goal: p99(100k) <= 2x p99(1k).
Both on SQLite and on Postgres (``--postgres``, needs the server at 127.0.0.1:5432). The daemon runs without
job workers (pins stay queued: this measures the API and the index, not placement). Server and load generator
are separate processes sharing the machine's cores.

    .venv/bin/python bench/bench_psa.py [--duration 5] [--rounds 3] [--postgres] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PUBLISHER = "bench"


def raw_cid(data: bytes) -> str:
    from pinner.cids import RAW, cid_bytes_v1, cid_str

    return cid_str(cid_bytes_v1(RAW, hashlib.sha256(data).digest()))


# --------------------------------------------------------------------------- server processes


def serve_bare(port: int) -> None:
    """The baseline: parse the JSON body, answer 202 with a PinStatus of the same shape as ours."""
    from aiohttp import web

    async def add(request: web.Request) -> web.Response:
        body = await request.json()
        status = {
            "requestid": str(uuid.uuid4()),
            "status": "queued",
            "created": "2026-01-01T00:00:00.000Z",
            "pin": {"cid": body["cid"], "origins": [], "meta": {}},
            "delegates": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBench"],
            "info": {},
        }
        return web.json_response(status, status=202)

    app = web.Application()
    app.router.add_post("/psa/pins", add)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=lambda *_: print("READY", flush=True)
    )


def serve_registry(data_dir: str, db_url: str, port: int) -> None:
    import logging

    from aiohttp import web

    from registry.app.daemon import build_app
    from registry.settings import load_settings

    logging.getLogger("modelpack.access").setLevel(logging.WARNING)
    settings = load_settings(
        None,
        storage={"data_dir": data_dir},
        database={"url": db_url},
        server={"port": port, "access_log": False},
        jobs={"workers": 0},
        pinning={"max_pins": 10**9},
    )
    app = build_app(settings)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=lambda *_: print("READY", flush=True)
    )


class Server:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "READY" not in line:
            raise RuntimeError(f"server did not start: {line!r}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- load generator


async def _load(spec: dict[str, Any]) -> dict[str, float]:
    """``spec``: method, url, token, duration, connections. POSTs carry a fresh CID each."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {spec['token']}"}
    stop_at = time.perf_counter() + spec["duration"]
    conn = aiohttp.TCPConnector(limit=spec["connections"])
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:

        async def worker(seed: int) -> None:
            nonlocal errors
            n = 0
            while time.perf_counter() < stop_at:
                n += 1
                kw: dict[str, Any] = {}
                if spec["method"] == "POST":
                    kw["json"] = {"cid": raw_cid(b"%d-%d-%s" % (seed, n, os.urandom(8)))}
                t0 = time.perf_counter()
                async with session.request(spec["method"], spec["url"], **kw) as r:
                    await r.read()
                    if r.status >= 300:
                        errors += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(spec["connections"])))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


def load(method: str, url: str, token: str, duration: float, connections: int) -> dict[str, float]:
    """Runs the load generator in its own process (so it does not share the GIL with us)."""
    spec = {"method": method, "url": url, "token": token, "duration": duration, "connections": connections}
    out = subprocess.run(
        [sys.executable, __file__, "_load", json.dumps(spec)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def medians(runs: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {m: statistics.median(r[m] for r in runs) for m in ("rps", "p50_ms", "p99_ms")}
    out["errors"] = sum(r["errors"] for r in runs)
    out["rounds_rps"] = [round(r["rps"]) for r in runs]
    out["rounds_p99_ms"] = [round(r["p99_ms"], 1) for r in runs]
    return out


# --------------------------------------------------------------------------- seeding


async def seed(db_url: str, migrate: bool) -> dict[str, str]:
    """Two pin-scope tokens: ``bench`` (whose pins are listed) and ``poster`` (who POSTs)."""
    from registry.accounts.auth import AuthService
    from registry.db.engine import create_engine, session_factory
    from registry.db.migrate import upgrade

    engine = create_engine(db_url)
    try:
        if migrate:
            await upgrade(engine)
        auth = AuthService(session_factory(engine))
        return {who: (await auth.create_token(who, scopes=("pin",))).token for who in (PUBLISHER, "poster")}
    finally:
        await engine.dispose()


async def fill_pins(db_url: str, start: int, stop: int) -> None:
    """Pinned pins start..stop-1 of the ``bench`` publisher, one a second apart, with bulk inserts."""
    from datetime import timedelta

    from sqlalchemy import insert, select, text

    from registry.db.base import utcnow
    from registry.db.engine import create_engine
    from registry.db.models import Publisher
    from registry.db.pins import Pin, PinStatus

    engine = create_engine(db_url)
    t0 = utcnow().replace(microsecond=0) - timedelta(days=30)
    try:
        async with engine.begin() as conn:
            pub = (await conn.execute(select(Publisher.id).where(Publisher.name == PUBLISHER))).scalar_one()
        for lo in range(start, stop, 10_000):
            rows = []
            for i in range(lo, min(stop, lo + 10_000)):
                cid = raw_cid(b"pin%d" % i)
                at = t0 + timedelta(seconds=i)
                rows.append(
                    {
                        "requestid": str(uuid.UUID(int=i + 1)),
                        "publisher_id": pub,
                        "cid": cid,
                        "cid_key": cid,
                        "name": f"pin-{i}",
                        "origins": [],
                        "meta": {"i": str(i)},
                        "status": PinStatus.PINNED,
                        "info": {"status_details": "pinned on 2 node(s)"},
                        "size": 1000,
                        "created": at,
                        "updated_at": at,
                        "pinned_at": at,
                    }
                )
            async with engine.begin() as conn:
                await conn.execute(insert(Pin), rows)
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- one database


def bench_db(work: Path, db_url: str, args: argparse.Namespace, migrate: bool) -> dict[str, Any]:
    tokens = asyncio.run(seed(db_url, migrate))
    data_dir = work / "data"
    data_dir.mkdir(parents=True)
    bare_port, reg_port = free_port(), free_port()
    out: dict[str, Any] = {}
    bare = Server("_bare", str(bare_port))
    reg = Server("_registry", str(data_dir), db_url, str(reg_port))
    try:
        targets = {
            "baseline": f"http://127.0.0.1:{bare_port}/psa/pins",
            "post_pins": f"http://127.0.0.1:{reg_port}/psa/pins",
        }
        for url in targets.values():
            load("POST", url, tokens["poster"], 1.0, args.connections)  # warm-up
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
        for _ in range(args.rounds):
            for key, url in targets.items():
                runs[key].append(load("POST", url, tokens["poster"], args.duration, args.connections))
        out = {k: medians(v) for k, v in runs.items()}
        out["post_ratio"] = out["post_pins"]["rps"] / out["baseline"]["rps"]
        listing = f"http://127.0.0.1:{reg_port}/psa/pins?limit=1000"
        have = 0
        for n in () if args.skip_get else (1_000, 100_000):
            t0 = time.perf_counter()
            asyncio.run(fill_pins(db_url, have, n))
            fill_s, have = time.perf_counter() - t0, n
            load("GET", listing, tokens[PUBLISHER], 1.0, args.get_connections)
            got = [
                load("GET", listing, tokens[PUBLISHER], args.duration, args.get_connections)
                for _ in range(args.rounds)
            ]
            out[f"get_{n}"] = {**medians(got), "fill_s": round(fill_s, 1)}
        if not args.skip_get:
            out["get_p99_ratio"] = out["get_100000"]["p99_ms"] / out["get_1000"]["p99_ms"]
    finally:
        for srv in (bare, reg):
            srv.stop()
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        cmd = sys.argv[1]
        if cmd == "_bare":
            serve_bare(int(sys.argv[2]))
        elif cmd == "_registry":
            serve_registry(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        elif cmd == "_load":
            print(json.dumps(asyncio.run(_load(json.loads(sys.argv[2])))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16, help="for POST /pins")
    ap.add_argument("--get-connections", type=int, default=4, help="for GET /pins?limit=1000")
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--skip-get", action="store_true", help="only (a): no 100k-pin fill")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-psa-") as tmp:
        work = Path(tmp)
        sqlite_url = f"sqlite+aiosqlite:///{work / 'index.sqlite3'}"
        results["sqlite"] = bench_db(work / "sqlite", sqlite_url, args, migrate=True)
        print(json.dumps({"sqlite": results["sqlite"]}, indent=2), file=sys.stderr, flush=True)
        if args.postgres:
            from tests import dbutil

            name = dbutil.unique_name("modelpack_bench_psa")
            dbutil.pg_create(name)
            try:
                results["postgres"] = bench_db(work / "pg", dbutil.pg_url(name), args, migrate=True)
            finally:
                dbutil.pg_drop(name)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
