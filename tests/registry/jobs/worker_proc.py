"""A job worker in its own process, for the concurrency and SIGKILL tests.

usage: python -m tests.registry.jobs.worker_proc DB_URL OWNER LOG_FILE MODE [LEASE_S]
MODE "hang": the handler logs its start and then sleeps forever (to be killed).
MODE "work": the handler logs start and end (with a short sleep between) for every job, until no
queued job is left for a few polls.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from registry.db.engine import create_engine, session_factory
from registry.jobs.protocol import ClaimedJob
from registry.jobs.sql import SqlJobQueue
from registry.jobs.worker import Worker, WorkerConfig


def _log(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def main(url: str, owner: str, log_path: str, mode: str, lease_s: float) -> None:
    engine = create_engine(url)
    queue = SqlJobQueue(session_factory(engine), lease_s=lease_s, backoff_base_s=0.05)

    async def handler(job: ClaimedJob) -> None:
        _log(log_path, f"start {job.id} {owner} {time.time():.6f}")
        if mode == "hang":
            await asyncio.sleep(3600)
        await asyncio.sleep(0.005)
        _log(log_path, f"end {job.id} {owner} {time.time():.6f}")

    worker = Worker(
        queue,
        {"test": handler},
        WorkerConfig(concurrency=1, poll_interval_s=0.05, heartbeat_s=lease_s / 4),
        owner=owner,
    )
    worker.start()
    idle = 0
    while idle < 20:
        await asyncio.sleep(0.05)
        stats = await queue.stats()
        live = sum(n for (kind, st), n in stats.depth.items() if st in ("queued", "running"))
        idle = idle + 1 if live == 0 else 0
    await worker.stop(5)
    await engine.dispose()


if __name__ == "__main__":
    url, owner, log_path, mode = sys.argv[1:5]
    lease = float(sys.argv[5]) if len(sys.argv) > 5 else 5.0
    asyncio.run(main(url, owner, log_path, mode, lease))
