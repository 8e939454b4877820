"""What the queue's raw-driver path must keep: fencing on every write, dedupe keys, one claimer per job,
its connections' lifecycle, and the same behaviour through the SQLAlchemy fallback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from registry.db.engine import create_engine, session_factory
from registry.db.jobs import JobState
from registry.db.migrate import upgrade
from registry.jobs import fastpath
from registry.jobs.protocol import ClaimedJob, LeaseLost
from registry.jobs.sql import SqlJobQueue
from tests import dbutil
from tests.registry.jobs.test_queue import _expire, _job


@pytest.fixture
def queue(sessions: async_sessionmaker[AsyncSession]) -> SqlJobQueue:
    return SqlJobQueue(sessions, lease_s=30, max_attempts=3)


_row = _job  # the queue tests' own helpers


async def _taken_over(queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]) -> ClaimedJob:
    """A job claimed by a worker whose lease then expired and went to another worker: the stale claim."""
    jid = await queue.enqueue("k", {"x": 1})
    stale = await queue.claim(["k"], "w1")
    assert stale is not None and stale.id == jid and stale.payload == {"x": 1}
    await _expire(sessions, jid)
    fresh = await queue.claim(["k"], "w2")
    assert fresh is not None and fresh.id == jid and fresh.lease_token != stale.lease_token
    return stale


@pytest.mark.parametrize("write", ["heartbeat", "complete", "fail", "fail-permanent", "release"])
async def test_every_write_of_a_worker_that_lost_its_lease_is_refused(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession], write: str
) -> None:
    stale = await _taken_over(queue, sessions)
    calls = {
        "heartbeat": lambda: queue.heartbeat(stale),
        "complete": lambda: queue.complete(stale),
        "fail": lambda: queue.fail(stale, "late"),
        "fail-permanent": lambda: queue.fail(stale, "late", permanent=True),
        "release": lambda: queue.release(stale),
    }
    with pytest.raises(LeaseLost):
        await calls[write]()
    row = await _row(sessions, stale.id)
    assert row.state == JobState.RUNNING and row.lease_owner == "w2" and row.attempts == 2
    assert row.last_error is None


async def test_a_queued_duplicate_of_a_running_job_does_not_hold_up_the_jobs_behind_it(
    queue: SqlJobQueue,
) -> None:
    first = await queue.enqueue("k", {}, dedupe_key="key", priority=5)
    running = await queue.claim(["k"], "w1")
    assert running is not None and running.id == first
    duplicate = await queue.enqueue("k", {}, dedupe_key="key", priority=5)  # most urgent, but blocked
    other = await queue.enqueue("k", {}, dedupe_key="other")
    plain = await queue.enqueue("k", {})
    got = [await queue.claim(["k"], "w2"), await queue.claim(["k"], "w2"), await queue.claim(["k"], "w2")]
    assert [j.id if j else None for j in got] == [other, plain, None]
    await queue.complete(running)
    again = await queue.claim(["k"], "w2")
    assert again is not None and again.id == duplicate


async def test_a_failed_job_whose_work_was_queued_again_meanwhile_is_cancelled(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await queue.enqueue("k", {}, dedupe_key="key")
    job = await queue.claim(["k"], "w")
    assert job is not None
    newer = await queue.enqueue("k", {}, dedupe_key="key")
    assert newer != first
    assert await queue.fail(job, "boom") == JobState.CANCELLED.value
    row = await _row(sessions, first)
    assert row.state == JobState.CANCELLED and row.last_error == "boom" and row.lease_token is None
    assert (await _row(sessions, newer)).state == JobState.QUEUED


async def test_a_released_job_whose_work_was_queued_again_meanwhile_is_cancelled(
    queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await queue.enqueue("k", {}, dedupe_key="key")
    job = await queue.claim(["k"], "w")
    assert job is not None
    newer = await queue.enqueue("k", {}, dedupe_key="key")
    await queue.release(job)
    assert (await _row(sessions, first)).state == JobState.CANCELLED
    assert (await _row(sessions, newer)).state == JobState.QUEUED


async def test_concurrent_claims_in_one_process_take_each_job_once(queue: SqlJobQueue) -> None:
    ids = {await queue.enqueue("k", {"i": i}) for i in range(6)}
    got = await asyncio.gather(*(queue.claim(["k", "other"], f"w{i}") for i in range(10)))
    claimed = [j.id for j in got if j is not None]
    assert sorted(claimed) == sorted(ids)
    await asyncio.gather(*(queue.complete(j) for j in got if j is not None))


async def test_the_queue_works_on_after_its_engine_is_disposed(
    engine: AsyncEngine, queue: SqlJobQueue, sessions: async_sessionmaker[AsyncSession]
) -> None:
    jid = await queue.enqueue("k", {})
    job = await queue.claim(["k"], "w")
    assert job is not None and job.id == jid
    await engine.dispose()  # closes the queue's own connections too
    await queue.complete(job)  # and the next call opens them again
    assert (await _row(sessions, jid)).state == JobState.SUCCEEDED
    assert await queue.claim(["k"], "w") is None


async def test_disposing_the_engine_ends_the_sqlite_thread(tmp_path: Path, sqlite_template: Path) -> None:
    def threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "jobs-sqlite"}

    before = threads()
    engine = create_engine(dbutil.clone_sqlite(sqlite_template, tmp_path / "db.sqlite3"))
    queue = SqlJobQueue(session_factory(engine))
    await queue.enqueue("k", {})
    assert await queue.claim(["k"], "w") is not None
    ours = threads() - before
    assert len(ours) == 1
    await engine.dispose()
    async with asyncio.timeout(30):
        while any(t.is_alive() for t in ours):
            await asyncio.sleep(0.01)


@pytest.fixture
async def memory_sessions() -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine("sqlite+aiosqlite://")
    await upgrade(engine)
    yield session_factory(engine)
    await engine.dispose()


async def test_an_in_memory_database_takes_the_sqlalchemy_path_with_the_same_guarantees(
    memory_sessions: async_sessionmaker[AsyncSession],
) -> None:
    queue = SqlJobQueue(memory_sessions, lease_s=30)
    assert isinstance(queue._runner, fastpath._SessionRunner)
    low = await queue.enqueue("k", {"n": 1})
    high = await queue.enqueue("k", {"n": 2}, priority=3, dedupe_key="d")
    job = await queue.claim(["k"], "w1")
    assert job is not None and job.id == high and job.payload == {"n": 2} and job.dedupe_key == "d"
    await _expire(memory_sessions, high)
    again = await queue.claim(["k"], "w2")
    assert again is not None and again.id == high and again.attempts == 2
    with pytest.raises(LeaseLost):
        await queue.complete(job)
    await queue.enqueue("k", {}, dedupe_key="d")
    assert await queue.fail(again, "boom") == JobState.CANCELLED.value
    last = await queue.claim(["k"], "w2")
    assert last is not None and last.id == low
    await queue.complete(last)
    assert (await _row(memory_sessions, low)).state == JobState.SUCCEEDED
