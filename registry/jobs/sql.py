"""The job queue on the index database.

Postgres: the claim is one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)``, so replicas of the
daemon share the queue without a leader. SQLite: write transactions are ``BEGIN IMMEDIATE`` (a single writer),
so the same statement is serialised. A partial unique index allows one *running* job per dedupe key; a
claim that would break it is retried with the next candidate.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.jobs import Job, JobState
from registry.jobs.protocol import ClaimedJob, LeaseLost, QueueStats

log = logging.getLogger(__name__)

MAX_ERROR_LEN = 4000
REAP_INTERVAL_S = 1.0  # how often a queue looks for jobs whose last attempt's lease ran out


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(max, base * 2**(attempt-1))]."""
    cap = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    r = rng or random
    return r.uniform(min(base_s / 2, cap), cap)


class SqlJobQueue:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        lease_s: float = 60.0,
        max_attempts: int = 8,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 600.0,
    ) -> None:
        self._sessions = sessions
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._last_reap = float("-inf")

    async def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
        priority: int = 0,
        run_after: datetime | None = None,
        max_attempts: int | None = None,
        session: AsyncSession | None = None,
    ) -> int:
        """Add a job; with a dedupe key already queued, return that job's id instead.

        Pass ``session`` to enqueue inside the caller's transaction (publish + its jobs commit together).
        """
        values = {
            "kind": kind,
            "payload": payload,
            "dedupe_key": dedupe_key,
            "priority": priority,
            "state": JobState.QUEUED.value,
            "attempts": 0,
            "max_attempts": max_attempts or self.max_attempts,
            "run_after": run_after or utcnow(),
            "created_at": utcnow(),
        }
        if session is not None:
            return await self._enqueue_in(session, values)
        async with self._sessions() as s, s.begin():
            return await self._enqueue_in(s, values)

    async def _enqueue_in(self, s: AsyncSession, values: dict[str, Any]) -> int:
        table = cast(Table, Job.__table__)
        if values["dedupe_key"] is None:
            res = await s.execute(table.insert().values(**values).returning(table.c.id))
            return int(res.scalar_one())
        dialect = s.get_bind().dialect.name
        ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(table).values(**values)
        # The partial index's predicate as a literal: with a bound parameter a generic plan (Postgres
        # switches to one after a few executions of a prepared statement) cannot infer the index.
        where = text("state = 'queued'")
        stmt = ins.on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=where).returning(
            table.c.id
        )
        new_id = (await s.execute(stmt)).scalar_one_or_none()
        if new_id is not None:
            return int(new_id)
        existing = await s.execute(
            select(Job.id).where(Job.dedupe_key == values["dedupe_key"], Job.state == JobState.QUEUED)
        )
        return int(existing.scalar_one())

    async def claim(self, kinds: Sequence[str], owner: str) -> ClaimedJob | None:
        """Lease the most urgent runnable job of ``kinds``, or return None."""
        if not kinds:
            return None
        for _ in range(8):  # a lost race on the running-dedupe index: try the next candidate
            try:
                return await self._claim_once(kinds, owner)
            except IntegrityError:
                continue
        return None

    async def _claim_once(self, kinds: Sequence[str], owner: str) -> ClaimedJob | None:
        now = utcnow()
        async with self._sessions() as s, s.begin():
            job = await self._claim_in(s, kinds, owner, now)
            if job is None or time.monotonic() - self._last_reap >= REAP_INTERVAL_S:
                self._last_reap = time.monotonic()
                await self._reap_dead(s, now)
            return job

    async def _reap_dead(self, s: AsyncSession, now: datetime) -> None:
        """A running job whose lease expired on its last allowed attempt is dead, not retried."""
        await s.execute(
            update(Job)
            .where(
                Job.state == JobState.RUNNING,
                Job.lease_expires_at < now,
                Job.attempts >= Job.max_attempts,
            )
            .values(
                state=JobState.DEAD,
                finished_at=now,
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
                last_error=func.coalesce(Job.last_error, "worker lease expired (worker died?)"),
            )
        )

    async def _claim_in(
        self, s: AsyncSession, kinds: Sequence[str], owner: str, now: datetime
    ) -> ClaimedJob | None:
        runnable = or_(
            and_(Job.state == JobState.QUEUED, Job.run_after <= now),
            and_(
                Job.state == JobState.RUNNING,
                Job.lease_expires_at < now,
                Job.attempts < Job.max_attempts,
            ),
        )
        candidate = (
            select(Job.id)
            .where(Job.kind.in_(list(kinds)), runnable)
            .order_by(Job.priority.desc(), Job.run_after, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        token = secrets.token_hex(16)
        stmt = (
            update(Job)
            .where(Job.id == candidate)
            .values(
                state=JobState.RUNNING,
                attempts=Job.attempts + 1,
                lease_owner=owner,
                lease_token=token,
                lease_expires_at=now + timedelta(seconds=self.lease_s),
                started_at=now,
            )
            .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.dedupe_key)
        )
        row = (await s.execute(stmt)).one_or_none()
        if row is None:
            return None
        return ClaimedJob(
            id=row.id,
            kind=row.kind,
            payload=row.payload,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            lease_token=token,
            dedupe_key=row.dedupe_key,
        )

    async def _fenced_update(self, job: ClaimedJob, **values: Any) -> None:
        async with self._sessions() as s, s.begin():
            res = await s.execute(
                update(Job)
                .where(Job.id == job.id, Job.lease_token == job.lease_token, Job.state == JobState.RUNNING)
                .values(**values)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseLost(job.id)

    async def heartbeat(self, job: ClaimedJob) -> None:
        await self._fenced_update(job, lease_expires_at=utcnow() + timedelta(seconds=self.lease_s))

    async def complete(self, job: ClaimedJob) -> None:
        await self._fenced_update(
            job,
            state=JobState.SUCCEEDED,
            finished_at=utcnow(),
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
        )

    async def fail(
        self, job: ClaimedJob, error: str, *, retry_in_s: float | None = None, permanent: bool = False
    ) -> str:
        """Record a failed attempt; returns the new state (``queued`` for a retry, or ``dead``)."""
        error = error[:MAX_ERROR_LEN]
        now = utcnow()
        if permanent or job.attempts >= job.max_attempts:
            await self._fenced_update(
                job,
                state=JobState.DEAD,
                last_error=error,
                finished_at=now,
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
            )
            return JobState.DEAD.value
        delay = (
            retry_in_s
            if retry_in_s is not None
            else backoff_delay(job.attempts, self.backoff_base_s, self.backoff_max_s)
        )
        try:
            await self._fenced_update(
                job,
                state=JobState.QUEUED,
                last_error=error,
                run_after=now + timedelta(seconds=delay),
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
            )
        except IntegrityError:
            # The same work was queued again meanwhile (same dedupe key): that job supersedes this one.
            await self._fenced_update(
                job, state=JobState.CANCELLED, last_error=error, finished_at=now, lease_token=None
            )
            return JobState.CANCELLED.value
        return JobState.QUEUED.value

    async def release(self, job: ClaimedJob) -> None:
        """Give a claimed job back untouched (graceful shutdown): the attempt does not count."""
        try:
            await self._fenced_update(
                job,
                state=JobState.QUEUED,
                attempts=Job.attempts - 1,
                run_after=utcnow(),
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
            )
        except IntegrityError:
            # A job with the same dedupe key was queued meanwhile; that one will do the work.
            await self._fenced_update(job, state=JobState.CANCELLED, finished_at=utcnow(), lease_token=None)

    async def stats(self) -> QueueStats:
        now = utcnow()
        async with readonly_session(self._sessions) as s:
            rows = await s.execute(
                select(Job.kind, Job.state, func.count())
                .where(Job.state.in_([JobState.QUEUED, JobState.RUNNING, JobState.DEAD]))
                .group_by(Job.kind, Job.state)
            )
            depth = {(k, st.value if hasattr(st, "value") else st): int(n) for k, st, n in rows}
            oldest = await s.execute(
                select(Job.kind, func.min(Job.run_after))
                .where(Job.state == JobState.QUEUED)
                .group_by(Job.kind)
            )
            ages = {}
            for kind, ts in oldest:
                if ts is not None:
                    if ts.tzinfo is None:  # func.min bypasses the column type on SQLite
                        ts = datetime.fromisoformat(str(ts)).replace(tzinfo=now.tzinfo)
                    ages[kind] = max(0.0, (now - ts).total_seconds())
        return QueueStats(depth=depth, oldest_queued_age_s=ages)
