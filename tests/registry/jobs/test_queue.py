"""The durable job queue on SQLite and Postgres: dedupe, leases, retries, dead jobs, fencing."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.jobs import Job, JobState
from registry.jobs.protocol import LeaseLost, PermanentJobError, RetryJob
from registry.jobs.sql import SqlJobQueue, backoff_delay
from registry.jobs.worker import Worker, WorkerConfig


@pytest.fixture
def queue(sessions: async_sessionmaker[AsyncSession]) -> SqlJobQueue:
    return SqlJobQueue(sessions, lease_s=30, max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)


async def _job(sessions: async_sessionmaker[AsyncSession], job_id: int) -> Job:
    async with sessions() as s:
        return (await s.execute(select(Job).where(Job.id == job_id))).scalar_one()


async def _expire(sessions: async_sessionmaker[AsyncSession], job_id: int) -> None:
    async with sessions() as s, s.begin():
        await s.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_enqueue_many_is_one_transaction_and_keeps_queued_dedupe_keys(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    kept = await queue.enqueue("pin", {"requestid": "old"}, dedupe_key="pin:a")
    async with sessions() as s, s.begin():
        await queue.enqueue_many(
            "pin",
            [({"requestid": "new"}, "pin:a"), ({"requestid": "b"}, "pin:b"), ({"n": 1}, None)],
            session=s,
        )
        await queue.enqueue_many("pin", [], session=s)
    with pytest.raises(RuntimeError):  # rolled back with the caller's transaction
        async with sessions() as s, s.begin():
            await queue.enqueue_many("pin", [({"requestid": "c"}, "pin:c")], session=s)
            raise RuntimeError
    async with sessions() as s:
        jobs = {
            (j.dedupe_key, j.id if j.dedupe_key == "pin:a" else None): j
            for j in (await s.execute(select(Job))).scalars()
        }
    assert set(jobs) == {("pin:a", kept), ("pin:b", None), (None, None)}
    assert jobs[("pin:a", kept)].payload == {"requestid": "old"}  # the queued job kept its payload
    claimed = [await queue.claim(["pin"], "w") for _ in range(3)]
    assert sorted(str(c.payload) for c in claimed if c) == sorted(
        str(p) for p in ({"requestid": "old"}, {"requestid": "b"}, {"n": 1})
    )
    assert all(c is not None and c.attempts == 1 and c.max_attempts == 3 for c in claimed)


async def test_enqueue_dedupes_queued_jobs(queue: SqlJobQueue) -> None:
    a = await queue.enqueue("replicate", {"pack": "x"}, dedupe_key="replicate:x")
    b = await queue.enqueue("replicate", {"pack": "x"}, dedupe_key="replicate:x")
    c = await queue.enqueue("replicate", {"pack": "y"}, dedupe_key="replicate:y")
    assert a == b != c


async def test_a_running_job_does_not_block_a_new_queued_one_but_they_never_run_together(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await queue.enqueue("replicate", {}, dedupe_key="k")
    claimed = await queue.claim(["replicate"], "w1")
    assert claimed is not None and claimed.id == first
    second = await queue.enqueue("replicate", {}, dedupe_key="k")
    assert second != first
    # the second may not run while the first holds the key
    assert await queue.claim(["replicate"], "w2") is None
    await queue.complete(claimed)
    again = await queue.claim(["replicate"], "w2")
    assert again is not None and again.id == second


async def test_claim_order_priority_then_due_time(queue: SqlJobQueue) -> None:
    low = await queue.enqueue("k", {"n": 1})
    high = await queue.enqueue("k", {"n": 2}, priority=10)
    later = await queue.enqueue("k", {"n": 3}, priority=99, run_after=utcnow() + timedelta(hours=1))
    got = [await queue.claim(["k"], "w"), await queue.claim(["k"], "w"), await queue.claim(["k"], "w")]
    assert [j.id if j else None for j in got] == [high, low, None]
    assert later not in [j.id for j in got if j]
    assert await queue.claim(["other"], "w") is None


async def test_fail_retries_with_backoff_then_dead_keeping_last_error(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    jid = await queue.enqueue("k", {})
    for attempt in range(1, 4):
        async with asyncio.timeout(60):  # wait out the (short) backoff
            while (job := await queue.claim(["k"], "w")) is None:
                await asyncio.sleep(0.01)
        assert job.attempts == attempt
        failed_at = utcnow()
        state = await queue.fail(job, f"boom {attempt}")
        row = await _job(sessions, jid)
        if attempt < 3:
            assert state == "queued" and row.state == JobState.QUEUED
            assert row.run_after >= failed_at  # the retry waits from the failure on
        else:
            assert state == "dead" and row.state == JobState.DEAD
    row = await _job(sessions, jid)
    assert row.last_error == "boom 3" and row.attempts == 3
    assert await queue.claim(["k"], "w") is None


async def test_expired_lease_is_claimed_again_and_the_old_worker_is_fenced_off(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    jid = await queue.enqueue("k", {})
    old = await queue.claim(["k"], "dead-worker")
    assert old is not None
    assert await queue.claim(["k"], "w2") is None  # lease still valid
    await _expire(sessions, jid)
    new = await queue.claim(["k"], "w2")
    assert new is not None and new.id == jid and new.attempts == 2
    with pytest.raises(LeaseLost):
        await queue.heartbeat(old)
    with pytest.raises(LeaseLost):
        await queue.complete(old)
    await queue.complete(new)
    assert (await _job(sessions, jid)).state == JobState.SUCCEEDED


async def test_expired_lease_on_last_attempt_goes_dead(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    jid = await queue.enqueue("k", {}, max_attempts=1)
    assert await queue.claim(["k"], "w1") is not None
    await _expire(sessions, jid)
    assert await queue.claim(["k"], "w2") is None
    row = await _job(sessions, jid)
    assert row.state == JobState.DEAD and "lease expired" in (row.last_error or "")


async def test_release_gives_the_attempt_back(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    jid = await queue.enqueue("k", {})
    job = await queue.claim(["k"], "w")
    assert job is not None
    await queue.release(job)
    row = await _job(sessions, jid)
    assert row.state == JobState.QUEUED and row.attempts == 0 and row.lease_token is None


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    rng = random.Random(7)
    caps = [min(60.0, 2.0 * 2 ** (a - 1)) for a in range(1, 10)]
    for attempt, cap in zip(range(1, 10), caps, strict=True):
        d = backoff_delay(attempt, 2.0, 60.0, rng)
        assert min(1.0, cap) <= d <= cap
    samples = {round(backoff_delay(5, 2.0, 60.0, rng), 3) for _ in range(20)}
    assert len(samples) > 10  # jittered, not a constant


async def test_worker_runs_handlers_and_maps_outcomes(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    seen: list[str] = []

    async def ok(job):  # type: ignore[no-untyped-def]
        seen.append(job.payload["name"])

    async def retry(job):  # type: ignore[no-untyped-def]
        if job.attempts < 2:
            raise RetryJob("not yet", delay_s=0)
        seen.append("retried")

    async def perm(job):  # type: ignore[no-untyped-def]
        raise PermanentJobError("hopeless input")

    ids = [
        await queue.enqueue("ok", {"name": "a"}),
        await queue.enqueue("retry", {}),
        await queue.enqueue("perm", {}),
    ]
    worker = Worker(queue, {"ok": ok, "retry": retry, "perm": perm}, WorkerConfig(poll_interval_s=0.02))
    worker.start()
    try:
        async with asyncio.timeout(60):
            while True:
                rows = [await _job(sessions, i) for i in ids]
                if all(r.state in (JobState.SUCCEEDED, JobState.DEAD) for r in rows):
                    break
                await asyncio.sleep(0.02)
    finally:
        await worker.stop(1)
    assert [r.state for r in rows] == [JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.DEAD]
    assert rows[2].last_error == "hopeless input" and rows[2].attempts == 1
    assert sorted(seen) == ["a", "retried"]


async def test_worker_stop_releases_jobs_still_running_after_the_grace_period(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    started = asyncio.Event()

    async def slow(job):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(3600)

    jid = await queue.enqueue("slow", {})
    worker = Worker(queue, {"slow": slow}, WorkerConfig(poll_interval_s=0.02))
    worker.start()
    async with asyncio.timeout(60):
        await started.wait()
    await worker.stop(0.1)
    row = await _job(sessions, jid)
    assert row.state == JobState.QUEUED and row.attempts == 0


async def test_dedupe_enqueue_survives_prepared_statement_reuse(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Many enqueues on one connection (Postgres switches a prepared statement to a generic plan after 5)."""
    queue = SqlJobQueue(sessions)
    async with sessions() as s, s.begin():
        ids = [await queue.enqueue("k", {"i": i}, dedupe_key=f"key-{i % 4}", session=s) for i in range(16)]
    assert len(set(ids)) == 4
    assert ids[:4] == ids[4:8] == ids[12:16]
