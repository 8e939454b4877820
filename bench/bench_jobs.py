"""Job-queue throughput: claim+complete per second against a raw driver loop of the same SQL, same run.

* SQLite, 1 worker process: ours (``SqlJobQueue``) against a plain ``sqlite3`` loop (WAL, synchronous=NORMAL,
  ``BEGIN IMMEDIATE`` ... ``COMMIT`` around the claim and around the completion).
* Postgres, 4 worker processes: ours against 4 processes each looping on one asyncpg connection (prepared
  statements; the claim's candidate is locked with ``FOR UPDATE SKIP LOCKED``; each statement its own
  implicit transaction).

The raw loops run the queue's own claim and completion SQL (``registry.jobs.statements``, compiled for the
database) with hand-bound parameters: the ratio is what the queue adds on top of the database's work. Each
round fills the queue afresh (N no-op jobs) before each side, and the sides alternate which goes first; workers
connect and warm up before the clock starts. Also printed: the old baseline, a one-row ``UPDATE`` transaction
through the engine (1 connection).

usage: .venv/bin/python bench/bench_jobs.py [--jobs 3000] [--rounds 3] [--skip-sqlite] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.dialects.sqlite import pysqlite

from registry.db.engine import create_engine, session_factory
from registry.jobs import statements
from registry.jobs.sql import SqlJobQueue
from tests import dbutil

KIND = "bench"
LEASE_S = 60.0


# ---------------------------------------------------------------------------------------------- workers


async def _ours(url: str, owner: str, barrier: Any) -> tuple[int, float]:
    engine = create_engine(url)
    q = SqlJobQueue(session_factory(engine), lease_s=LEASE_S)
    await q.claim([f"{KIND}-warmup"], owner)  # opens the connection, prepares the claim
    barrier.wait()
    n = 0
    while (job := await q.claim([KIND], owner)) is not None:
        await q.complete(job)
        n += 1
    end = time.monotonic()
    await engine.dispose()
    return n, end


def _args(c: statements.Compiled, vals: dict[str, Any]) -> list[Any]:
    return [{**c.defaults, **vals}[n] for n in c.names]


def _sqlite_ts(d: datetime) -> str:
    return d.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _raw_sqlite(path: str, owner: str, barrier: Any) -> tuple[int, float]:
    d = pysqlite.dialect()
    claim, complete = statements.claim(1).compiled(d), statements.COMPLETE.compiled(d)
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
        con.execute(f"PRAGMA {pragma}")
    barrier.wait()
    n = 0
    while True:
        now, token = datetime.now(UTC), secrets.token_hex(16)
        vals = {"k0": KIND, "now": _sqlite_ts(now), "owner": owner, "token": token}
        vals["expires"] = _sqlite_ts(now + timedelta(seconds=LEASE_S))
        con.execute("BEGIN IMMEDIATE")
        row = con.execute(claim.sql, _args(claim, vals)).fetchone()
        con.execute("COMMIT")
        if row is None:
            break
        json.loads(row[2])
        con.execute("BEGIN IMMEDIATE")
        done = con.execute(
            complete.sql,
            _args(complete, {"now": _sqlite_ts(datetime.now(UTC)), "job_id": row[0], "token": token}),
        )
        assert done.rowcount == 1
        con.execute("COMMIT")
        n += 1
    end = time.monotonic()
    con.close()
    return n, end


async def _raw_pg(db: str, owner: str, barrier: Any) -> tuple[int, float]:
    import asyncpg

    d = pg_asyncpg.dialect()
    claim, complete = statements.claim(1).compiled(d), statements.COMPLETE.compiled(d)
    conn = await asyncpg.connect(host=dbutil.PG_HOST, port=dbutil.PG_PORT, user=dbutil.PG_USER, database=db)
    claim_ps, complete_ps = await conn.prepare(claim.sql), await conn.prepare(complete.sql)
    barrier.wait()
    n = 0
    while True:
        now, token = datetime.now(UTC), secrets.token_hex(16)
        vals = {
            "k0": KIND,
            "now": now,
            "owner": owner,
            "token": token,
            "expires": now + timedelta(seconds=LEASE_S),
        }
        row = await claim_ps.fetchrow(*_args(claim, vals))
        if row is None:
            break
        json.loads(row[2])
        await complete_ps.fetch(
            *_args(complete, {"now": datetime.now(UTC), "job_id": row[0], "token": token})
        )
        assert complete_ps.get_statusmsg() == "UPDATE 1"
        n += 1
    end = time.monotonic()
    await conn.close()
    return n, end


def _proc(target: Callable[..., Any], args: tuple[Any, ...], out: Any) -> None:
    res = target(*args)
    out.put(asyncio.run(res) if asyncio.iscoroutine(res) else res)


def _timed(target: Callable[..., Any], arg: str, workers: int, n: int) -> float:
    """claims/s of ``workers`` processes running ``target(arg, owner, barrier)`` until the queue is empty."""
    out: Any = mp.Queue()
    barrier: Any = mp.Barrier(workers + 1)
    procs = [mp.Process(target=_proc, args=(target, (arg, f"w{i}", barrier), out)) for i in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.monotonic()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    done = sum(r[0] for r in results)
    assert done == n, (done, n)
    return n / (max(r[1] for r in results) - t0)


# ---------------------------------------------------------------------------------------------- setup


async def _fill(url: str, n: int) -> None:
    """An empty job table, then ``n`` queued no-op jobs."""
    engine = create_engine(url)
    now = datetime.now(UTC)
    rows = [
        {"kind": KIND, "payload": {"i": i}, "state": "queued", "priority": 0, "attempts": 0}
        | {"max_attempts": 8, "run_after": now, "created_at": now}
        for i in range(n)
    ]
    async with engine.begin() as c:
        await c.execute(text("DELETE FROM jobs" if engine.dialect.name == "sqlite" else "TRUNCATE jobs"))
        await c.execute(insert(statements.JOBS), rows)
    await engine.dispose()


async def _update_baseline(url: str, n: int) -> float:
    engine = create_engine(url)
    async with engine.begin() as c:
        await c.execute(text("CREATE TABLE IF NOT EXISTS bench_counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        await c.execute(text("DELETE FROM bench_counter"))
        await c.execute(text("INSERT INTO bench_counter VALUES (1, 0)"))
    t = time.perf_counter()
    for _ in range(n):
        async with engine.begin() as c:
            await c.execute(text("UPDATE bench_counter SET n = n + 1 WHERE id = 1"))
    dt = time.perf_counter() - t
    await engine.dispose()
    return n / dt


def compare(
    name: str, url: str, raw: tuple[Callable[..., Any], str], workers: int, n: int, rounds: int
) -> None:
    ratios = []
    for r in range(rounds):
        rates: dict[str, float] = {}
        sides = [("ours", _ours, url), ("raw", *raw)]
        for side, target, arg in sides if r % 2 == 0 else sides[::-1]:
            asyncio.run(_fill(url, n))
            rates[side] = _timed(target, arg, workers, n)
        ratios.append(rates["ours"] / rates["raw"])
        print(
            f"{name:8} {workers} worker(s), round {r + 1}: ours {rates['ours']:6.0f} claims/s, "
            f"raw loop {rates['raw']:6.0f} claims/s, ratio {ratios[-1]:.2f}",
            flush=True,
        )
    base = asyncio.run(_update_baseline(url, min(n, 1000)))
    print(
        f"{name:8} median ratio {statistics.median(ratios):.2f} (goal >= 0.5; range {min(ratios):.2f}-{max(ratios):.2f}); "
        f"1-row UPDATE txn through the engine: {base:.0f}/s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "bench.sqlite3"
            url = dbutil.sqlite_url(path)
            asyncio.run(dbutil.migrate_url(url))
            compare("sqlite", url, (_raw_sqlite, str(path)), 1, args.jobs, args.rounds)
    if not args.skip_postgres:
        name = dbutil.unique_name("modelpack_bench")
        dbutil.pg_create(name)
        try:
            url = dbutil.pg_url(name)
            asyncio.run(dbutil.migrate_url(url))
            compare("postgres", url, (_raw_pg, name), 4, args.jobs, args.rounds)
        finally:
            dbutil.pg_drop(name)


if __name__ == "__main__":
    main()
