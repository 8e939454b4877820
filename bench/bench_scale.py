"""Scale figures (issue #17 item 7), on Postgres at 127.0.0.1:5432 (a database of its own, dropped after).

(a) Reads as the index grows: ``--sizes`` packs (10k and 1M; 10 per model, a ``latest`` pointer each), read cache
    off, 32 connections, ``--duration`` s per target: resolve of random models; ``GET /v1/models`` first page and
    a cursor page; ``?prefix=`` matching one model at every size, and a 3-digit one (``models_prefix_page``: 1 match
    at 10k, 111 at 1M: the response grows to a page). Each target draws its URLs among 500 distinct ones at every
    size, so that the reads the daemon remembers are as many at every size. p50/p99 at each size, p99 growth
    (goal <= 2x).
(b) Job handlers over ``--job-packs`` packs (100k), each with one shard; two Kubo nodes (fakes in the handler's
    process) pin both units of every pack but one pin in 1,000 on the first node; the newest pack of each model is
    curated (pointer ``curated``), the one before it validated. The replication reconcile (the ``reconcile``
    job's handler) and the curation sweep (``curate-sweep``'s), each once in a fresh process: wall time and the
    peak RSS growth over that process after its setup (psutil, 10 ms samples). ``--sqlite-jobs``: also on SQLite.
Rows are bulk-written (COPY on Postgres, executemany batches on SQLite).

    .venv/bin/python bench/bench_scale.py [--duration 5] [--sizes 10000,1000000] [--job-packs 100000] [--skip-http]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api  # its server processes, load generator and seeding

MIB = 1024 * 1024
PER_MODEL = 10
BATCH = 20_000
MODEL_ID0 = 1000
MISSING_EVERY = 1000  # one pin in this many is missing on the first node (reconcile finds it lost)
NODES = 2
COLUMNS = {  # what fill writes, in this order (foreign keys)
    "models": ("id", "namespace_id", "name", "created_at"),
    "manifests": ("cid", "manifest", "total_size", "shard_count", "created_at"),
    "packs": ("cid", "model_id", "model_version", "state", "created_at", "updated_at"),
    "pointers": ("model_id", "tag", "pack_cid", "updated_at"),
    "shards": ("pack_cid", "position", "filename", "cid", "sha256", "size", "role"),
    "replicas": ("cid", "node_id", "state", "attempts", "bytes_moved", "updated_at", "pinned_at"),
}


def cid_of(kind: bytes, i: int) -> str:
    from pinner.cids import RAW, cid_bytes_v1, cid_str

    return cid_str(cid_bytes_v1(RAW, hashlib.sha256(kind + b"%d" % i).digest()))


# --------------------------------------------------------------------------- bulk fill


class Writer:
    """Rows into tables: COPY on Postgres (asyncpg), executemany batches on SQLite (SQLAlchemy Core)."""

    def __init__(self, db_url: str) -> None:
        self.url = db_url
        self.pg = db_url.startswith("postgresql")
        self._conn: Any = None
        self._engine: Any = None

    async def __aenter__(self) -> Writer:
        if self.pg:
            import asyncpg

            self._conn = await asyncpg.connect(self.url.replace("postgresql+asyncpg", "postgresql"))
        else:
            from registry.db.engine import create_engine

            self._engine = create_engine(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()
        if self._engine is not None:
            await self._engine.dispose()

    async def scalar(self, sql: str) -> Any:
        if self.pg:
            return await self._conn.fetchval(sql)
        from sqlalchemy import text

        async with self._engine.begin() as c:
            result = await c.execute(text(sql))
            return result.scalar() if result.returns_rows else None

    async def rows(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.pg:
            await self._conn.copy_records_to_table(table, records=rows, columns=list(columns))
            return
        from sqlalchemy import insert

        from registry.db.base import Base

        async with self._engine.begin() as c:
            await c.execute(
                insert(Base.metadata.tables[table]), [dict(zip(columns, r, strict=True)) for r in rows]
            )


async def fill(db_url: str, start: int, stop: int, *, jobs: bool = False) -> None:
    """Adds packs start..stop-1: content, listing, a model per PER_MODEL packs with a ``latest`` pointer at its
    newest. ``jobs`` (once per database): also the nodes, a shard per pack, both units pinned on every node,
    the newest pack of each model curated (pointer ``curated``) and the one before it validated."""
    from registry.db.base import utcnow

    base = utcnow() - timedelta(days=1)  # created in order, all within GC's retention (every pack live)
    async with Writer(db_url) as w:
        ns = await w.scalar("SELECT id FROM namespaces WHERE name = 'acme'")
        node_ids = await _nodes(w) if jobs else []
        for lo in range(start, stop, BATCH):
            hi = min(stop, lo + BATCH)
            rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in COLUMNS}
            for i in range(lo, hi):
                at = base + timedelta(milliseconds=i)
                mid, pos = MODEL_ID0 + i // PER_MODEL, i % PER_MODEL
                cid = cid_of(b"pack", i)
                if pos == 0:
                    rows["models"].append((mid, ns, f"m{i // PER_MODEL}", at))
                rows["manifests"].append((cid, b"{}", 1000 + 2, 1, at))
                state = "available"
                if jobs and pos == PER_MODEL - 1:
                    state = "curated"
                    rows["pointers"].append((mid, "curated", cid, at))
                elif jobs and pos == PER_MODEL - 2:
                    state = "validated"
                rows["packs"].append((cid, mid, str(i), state, at, at))
                if pos == PER_MODEL - 1:
                    rows["pointers"].append((mid, "latest", cid, at))
                if jobs:
                    shard = cid_of(b"shard", i)
                    rows["shards"].append((cid, 0, "model.safetensors", shard, "0" * 64, 1000, "shard"))
                    for nid in node_ids:
                        rows["replicas"] += [(u, nid, "pinned", 0, 1000, at, at) for u in (shard, cid)]
            for table, batch in rows.items():
                await w.rows(table, COLUMNS[table], batch)
        if jobs:
            await w.scalar("UPDATE namespaces SET required_signatures = 0 WHERE name = 'acme'")
        await w.scalar("ANALYZE")


async def _nodes(w: Writer) -> list[int]:
    for n in range(NODES):
        await w.scalar(
            "INSERT INTO ipfs_nodes (name, kind, url, tags, state, draining, free_space, created_at) "
            f"VALUES ('n{n}', 'kubo', 'http://127.0.0.1:{40000 + n}', '{{}}', 'up', false, "
            f"{10**15}, CURRENT_TIMESTAMP)"
        )
    ids = [await w.scalar(f"SELECT id FROM ipfs_nodes WHERE name = 'n{n}'") for n in range(NODES)]
    return [int(i) for i in ids]


# --------------------------------------------------------------------------- (a) reads at scale

TARGETS = ("resolve", "models_first", "models_cursor", "models_prefix", "models_prefix_page")
DISTINCT_KEYS = 500  # distinct URLs per target at every size (the smallest, 10k packs, has 1,000 models)


def http_at(work: Path, db_url: str, n: int, duration: float) -> dict[str, Any]:
    from registry.api.pagination import encode_cursor

    data_dir = work / f"pg-{n}"
    data_dir.mkdir()
    port = bench_api.free_port()
    server = bench_api.Server("_registry", str(data_dir), db_url, str(port), "0")  # read cache off
    models = n // PER_MODEL
    rnd = random.Random(n)
    base = f"http://127.0.0.1:{port}/v1/models"

    def spread(choices: range, n: int) -> list[int]:
        """``n`` draws among the same number of distinct values at every size (DISTINCT_KEYS): the daemon
        remembers repeated reads, so a size with more distinct URLs would also measure more first reads."""
        pool = rnd.sample(choices, min(DISTINCT_KEYS, len(choices)))
        return [rnd.choice(pool) for _ in range(n)]

    urls = {
        "resolve": [f"{base}/acme/m{i}/pointers/latest" for i in spread(range(models), 2000)],
        "models_first": [base],
        "models_cursor": [
            f"{base}?cursor={encode_cursor(['acme', f'm{i}'])}" for i in spread(range(models), 2000)
        ],
        # a model of the last decade of names: one match at every size (see the docstring)
        "models_prefix": [f"{base}?prefix=m{i}" for i in spread(range(models // 10, models), 900)],
        "models_prefix_page": [f"{base}?prefix=m{i}" for i in spread(range(100, 1000), 900)],
    }
    out: dict[str, Any] = {}
    try:
        for key in TARGETS:
            bench_api.load(urls[key][:100], 1.0)  # warm-up
            out[key] = bench_api.load(urls[key], duration)
    finally:
        server.stop()
    return out


def bench_http(work: Path, duration: float, sizes: list[int]) -> dict[str, Any]:
    from tests import dbutil

    name = dbutil.unique_name("modelpack_scale")
    dbutil.pg_create(name)
    db_url = dbutil.pg_url(name)
    out: dict[str, Any] = {}
    try:
        asyncio.run(bench_api.seed_local(db_url))
        have = 0
        for n in sizes:
            t0 = time.perf_counter()
            asyncio.run(fill(db_url, have, n))
            have = n
            out[str(n)] = {"fill_s": time.perf_counter() - t0, **http_at(work, db_url, n, duration)}
    finally:
        dbutil.pg_drop(name)
    return out


# --------------------------------------------------------------------------- (b) job handlers at scale


class FakeBackends:
    """Kubo nodes' pinsets as reconcile streams them (``list_pins``), built before the measurement."""

    def __init__(self, packs: int) -> None:
        self.pins = {f"n{n}": list(node_pins(n, packs)) for n in range(NODES)}

    def backend(self, node: Any) -> Any:
        async def list_pins() -> AsyncIterator[str]:
            for cid in self.pins[node.name]:
                yield cid

        return SimpleNamespace(list_pins=list_pins)


def node_pins(n: int, packs: int) -> Iterator[str]:
    for i in range(packs):
        if not (n == 0 and i % MISSING_EVERY == 0):
            yield cid_of(b"shard", i)
        yield cid_of(b"pack", i)


async def run_job(kind: str, db_url: str, packs: int) -> dict[str, Any]:
    """One handler run in this (fresh) process: wall time and peak RSS growth over the set-up process."""
    from pinner.replication.model import Target
    from registry.db.engine import create_engine, session_factory
    from registry.gate.config import GateConfig
    from registry.gate.curation import CurationService
    from registry.gate.rule import RegistryReplication, registry_trust
    from registry.jobs.protocol import ClaimedJob
    from registry.jobs.sql import SqlJobQueue
    from registry.replication.nodes import NodeRegistry
    from registry.replication.reconcile import Reconciler
    from registry.replication.rows import ReplicationConfig

    engine = create_engine(db_url)
    sessions, result = session_factory(engine), dict[str, Any]()
    rconf, gconf = ReplicationConfig(), GateConfig()
    if kind == "reconcile":
        nodes = NodeRegistry(sessions, b"\0" * 32, allowed_hosts=("127.0.0.1",))
        backends = FakeBackends(packs)  # the nodes' pinsets: the nodes' memory, not the handler's
        handler = Reconciler(sessions, backends, SqlJobQueue(sessions), nodes, rconf).reconcile
    else:
        repl = RegistryReplication(Target(gconf.replication_min, gconf.replication_max), rconf.down_grace)
        curation = CurationService(sessions, gconf, registry_trust, repl)

        async def handler(job: ClaimedJob) -> None:
            result["counts"] = await curation.sweep()

    async with engine.connect() as c:  # the pool's first connection, before the baseline
        await c.exec_driver_sql("SELECT 1")
    gc.collect()
    ps = psutil.Process()
    rss0 = peak = ps.memory_info().rss
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, ps.memory_info().rss)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.perf_counter()
    try:
        await handler(ClaimedJob(id=1, kind=kind, payload={}, attempts=1, max_attempts=5, lease_token="t"))
    finally:
        wall = time.perf_counter() - t0
        done.set()
        watcher.join()
        await engine.dispose()
    peak = max(peak, ps.memory_info().rss)
    return {**result, "wall_s": wall, "rss_before_mib": rss0 / MIB, "rss_growth_mib": (peak - rss0) / MIB}


def job_process(kind: str, db_url: str, packs: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_job", kind, db_url, str(packs)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return {"timed_out_s": timeout}
    return dict(json.loads(out.strip().splitlines()[-1]))


async def _job_counts(db_url: str) -> dict[str, Any]:
    async with Writer(db_url) as w:
        return {
            "replicas_lost": await w.scalar("SELECT count(*) FROM replicas WHERE state = 'lost'"),
            "replicate_jobs": await w.scalar("SELECT count(*) FROM jobs WHERE kind = 'replicate'"),
        }


def bench_jobs(work: Path, packs: int, sqlite: bool, timeout: float) -> dict[str, Any]:
    from tests import dbutil

    out: dict[str, Any] = {}
    name = dbutil.unique_name("modelpack_scale_jobs")
    dbutil.pg_create(name)
    urls = {"postgres": dbutil.pg_url(name)}
    if sqlite:
        (work / "jobs-sqlite").mkdir()
        urls["sqlite"] = f"sqlite+aiosqlite:///{work / 'jobs-sqlite' / 'index.sqlite3'}"
    try:
        for db, url in urls.items():
            asyncio.run(bench_api.seed_local(url))
            t0 = time.perf_counter()
            asyncio.run(fill(url, 0, packs, jobs=True))
            r: dict[str, Any] = {"fill_s": time.perf_counter() - t0}
            for kind in ("reconcile", "curate-sweep"):
                r[kind] = job_process(kind, url, packs, timeout)
            r["after"] = asyncio.run(_job_counts(url))
            out[db] = r
    finally:
        dbutil.pg_drop(name)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_job":
        print(json.dumps(asyncio.run(run_job(sys.argv[2], sys.argv[3], int(sys.argv[4]))), default=str))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--sizes", default="10000,1000000")
    ap.add_argument("--job-packs", type=int, default=100_000)
    ap.add_argument("--job-timeout", type=float, default=600.0, help="seconds per handler run")
    ap.add_argument("--sqlite-jobs", action="store_true")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-jobs", action="store_true")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelpack-bench-scale-", dir=args.dir))
    report: dict[str, Any] = {"load_before": psutil.getloadavg()}
    try:
        if not args.skip_http:
            sizes = [int(x) for x in args.sizes.split(",")]
            h = report["http"] = bench_http(work, args.duration, sizes)
            report["load_after_http"] = psutil.getloadavg()
            for n in sizes:
                print(f"(a) {n:>8} packs ({n // PER_MODEL} models), fill {h[str(n)]['fill_s']:.0f} s:")
                for key in TARGETS:
                    x = h[str(n)][key]
                    print(
                        f"      {key:14s} {x['rps']:7.0f} req/s  p50 {x['p50_ms']:7.1f} ms  "
                        f"p99 {x['p99_ms']:7.1f} ms  errors {x['errors']:.0f}"
                    )
            lo, hi = h[str(sizes[0])], h[str(sizes[-1])]
            for key in TARGETS:
                print(
                    f"(a) {key:14s} p99 growth {sizes[0]} -> {sizes[-1]}: "
                    f"{hi[key]['p99_ms'] / lo[key]['p99_ms']:.2f}x (goal <= 2)"
                )
        if not args.skip_jobs:
            j = report["jobs"] = bench_jobs(work, args.job_packs, args.sqlite_jobs, args.job_timeout)
            report["load_after_jobs"] = psutil.getloadavg()
            for db, r in j.items():
                print(f"(b) {db}: {args.job_packs} packs (fill {r['fill_s']:.0f} s), after: {r['after']}")
                for kind in ("reconcile", "curate-sweep"):
                    x = r[kind]
                    print(
                        f"      {kind:13s} did not finish within {x['timed_out_s']:.0f} s"
                        if "timed_out_s" in x
                        else f"      {kind:13s} {x['wall_s']:7.1f} s  peak RSS +{x['rss_growth_mib']:.1f} MiB "
                        f"(from {x['rss_before_mib']:.0f} MiB) {x.get('counts', '')}"
                    )
        print(f"load average (1, 5, 15 min): before {report['load_before']}, after {psutil.getloadavg()}")
        print(json.dumps(report, indent=2, default=str), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
