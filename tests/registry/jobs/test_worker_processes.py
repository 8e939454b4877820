"""Real concurrent worker processes on one database; a worker killed with SIGKILL mid-job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.jobs import Job, JobState
from registry.jobs.sql import SqlJobQueue

ROOT = Path(__file__).resolve().parents[3]


def _spawn(db_url: str, owner: str, log: Path, mode: str, lease_s: float = 5.0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.registry.jobs.worker_proc",
            db_url,
            owner,
            str(log),
            mode,
            str(lease_s),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _parse(log: Path) -> dict[int, list[tuple[str, str, float]]]:
    events: dict[int, list[tuple[str, str, float]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        what, jid, owner, ts = line.split()
        events[int(jid)].append((what, owner, float(ts)))
    return events


async def _job(sessions: async_sessionmaker[AsyncSession], jid: int) -> Job:
    async with sessions() as s:
        return (await s.execute(select(Job).where(Job.id == jid))).scalar_one()


def _wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
async def test_concurrent_worker_processes_run_every_job_exactly_once(
    db_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    queue = SqlJobQueue(sessions)
    n_jobs = 120
    ids = [await queue.enqueue("test", {"i": i}) for i in range(n_jobs)]
    workers = 4 if db_url.startswith("postgresql") else 2
    log = tmp_path / "runs.log"
    procs = [_spawn(db_url, f"w{i}", log, "work") for i in range(workers)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]

    events = _parse(log)
    assert sorted(events) == sorted(ids)
    owners = set()
    for jid, evs in events.items():
        assert [e[0] for e in evs] == ["start", "end"], f"job {jid} ran {evs}"
        owners.add(evs[0][1])
    assert len(owners) > 1, "the work was not shared between workers"
    async with sessions() as s:
        rows = (await s.execute(select(Job.state, Job.attempts))).all()
    assert all(st == JobState.SUCCEEDED and att == 1 for st, att in rows)


@pytest.mark.slow
async def test_job_of_a_sigkilled_worker_is_run_again_once_its_lease_expires(
    db_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    queue = SqlJobQueue(sessions)
    jid = await queue.enqueue("test", {}, dedupe_key="only-one")
    log = tmp_path / "runs.log"
    lease = 1.5
    victim = _spawn(db_url, "victim", log, "hang", lease)
    try:
        _wait_for(lambda: log.exists() and "start" in log.read_text(), 60, "the victim to start the job")
        # wait for a heartbeat to renew the lease, then kill without any chance to clean up
        claimed = (await _job(sessions, jid)).lease_expires_at
        assert claimed is not None
        async with asyncio.timeout(60):
            while (renewed := (await _job(sessions, jid)).lease_expires_at) is None or renewed <= claimed:
                await asyncio.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL

    rescuer = _spawn(db_url, "rescuer", log, "work", lease)
    _, err = rescuer.communicate(timeout=60)
    assert rescuer.returncode == 0, err.decode()[-2000:]

    evs = _parse(log)[jid]
    assert [(w, o) for w, o, _ in evs] == [("start", "victim"), ("start", "rescuer"), ("end", "rescuer")]
    assert evs[1][2] >= killed_at  # never two runs at once
    job = await _job(sessions, jid)
    assert job.state == JobState.SUCCEEDED and job.attempts == 2
