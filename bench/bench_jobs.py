"""Job-queue throughput: claim+complete per second, Postgres with 4 worker processes and SQLite with 1.

The baseline, measured in the same run on the same database, is a trivial one-row UPDATE transaction
per job (the least a durable queue must do), so the ratio says what leasing costs.

usage: .venv/bin/python bench/bench_jobs.py [--jobs 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from registry.db.engine import create_engine, session_factory
from registry.jobs.sql import SqlJobQueue
from tests import dbutil


async def _drain(url: str, owner: str) -> int:
    engine = create_engine(url)
    q = SqlJobQueue(session_factory(engine))
    n = 0
    while (job := await q.claim(["bench"], owner)) is not None:
        await q.complete(job)
        n += 1
    await engine.dispose()
    return n


def _worker(url: str, owner: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    out.put(asyncio.run(_drain(url, owner)))


async def _fill(url: str, n: int) -> None:
    engine = create_engine(url)
    sessions = session_factory(engine)
    q = SqlJobQueue(sessions)
    async with sessions() as s, s.begin():
        for i in range(n):
            await q.enqueue("bench", {"i": i}, session=s)
    await engine.dispose()


async def _baseline(url: str, n: int) -> float:
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


def run(url: str, workers: int, n: int) -> tuple[float, float]:
    asyncio.run(_fill(url, n))
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_worker, args=(url, f"w{i}", out)) for i in range(workers)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    done = sum(out.get() for _ in procs)
    dt = time.perf_counter() - t
    for p in procs:
        p.join()
    assert done == n, (done, n)
    base = asyncio.run(_baseline(url, min(n, 2000)))
    return n / dt, base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        url = dbutil.sqlite_url(Path(d) / "bench.sqlite3")
        asyncio.run(dbutil.migrate_url(url))
        rate, base = run(url, 1, args.jobs)
        print(
            f"sqlite   1 worker : {rate:8.0f} claims/s (claim+complete); baseline 1-row UPDATE txn {base:8.0f}/s; ratio {rate / base:.2f}"
        )
    name = dbutil.unique_name("modelpack_bench")
    dbutil.pg_create(name)
    try:
        url = dbutil.pg_url(name)
        asyncio.run(dbutil.migrate_url(url))
        rate, base = run(url, 4, args.jobs)
        print(
            f"postgres 4 workers: {rate:8.0f} claims/s (claim+complete); baseline 1-row UPDATE txn {base:8.0f}/s (1 conn); ratio {rate / base:.2f}"
        )
    finally:
        dbutil.pg_drop(name)


if __name__ == "__main__":
    main()
