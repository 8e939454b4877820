"""Lease fencing reaches the handler: a worker that cannot renew its lease stops the handler, not just the row."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.jobs import Job, JobState
from registry.jobs.protocol import ClaimedJob
from registry.jobs.sql import SqlJobQueue
from registry.jobs.worker import Worker, WorkerConfig


class _Unreachable(SqlJobQueue):
    """Claims work; every heartbeat then fails (database gone) or hangs (a stuck connection)."""

    mode = "raise"

    async def heartbeat(self, job: ClaimedJob) -> None:
        if self.mode == "hang":
            await asyncio.Event().wait()
        raise OSError("connection refused")


@pytest.mark.parametrize("mode", ["raise", "hang"])
async def test_handler_is_cancelled_when_the_lease_lapses_without_a_heartbeat(
    sessions: async_sessionmaker[AsyncSession], mode: str
) -> None:
    queue = _Unreachable(sessions, lease_s=0.5)
    queue.mode = mode
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(job: ClaimedJob) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await queue.enqueue("slow", {})
    worker = Worker(
        queue, {"slow": slow}, WorkerConfig(poll_interval_s=0.02, heartbeat_s=0.1, lease_s=queue.lease_s)
    )
    worker.start()
    try:
        async with asyncio.timeout(60):
            await started.wait()
            await cancelled.wait()
            while worker.in_flight:
                await asyncio.sleep(0.02)
    finally:
        await worker.stop(1)


async def test_a_healthy_heartbeat_keeps_the_handler_running_past_the_lease(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    queue = SqlJobQueue(sessions, lease_s=2.0)
    beats = 0
    real = queue.heartbeat

    async def counting(job: ClaimedJob) -> None:
        nonlocal beats
        await real(job)
        beats += 1

    queue.heartbeat = counting  # type: ignore[method-assign]
    release = asyncio.Event()

    async def slow(job: ClaimedJob) -> None:
        await release.wait()

    jid = await queue.enqueue("slow", {})
    worker = Worker(
        queue, {"slow": slow}, WorkerConfig(poll_interval_s=0.02, heartbeat_s=0.1, lease_s=queue.lease_s)
    )
    worker.start()
    try:
        async with asyncio.timeout(60):
            while beats < 30:  # ~3 s: past lease_s, on renewed leases
                await asyncio.sleep(0.02)
            assert worker.in_flight == 1
            release.set()
            while worker.in_flight:
                await asyncio.sleep(0.02)
    finally:
        await worker.stop(1)
    async with sessions() as s:
        assert (await s.get(Job, jid)).state == JobState.SUCCEEDED  # type: ignore[union-attr]
