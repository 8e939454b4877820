"""The job queue on the index database.

Postgres: the claim is one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)``, so replicas of the
daemon share the queue without a leader. SQLite: write transactions are ``BEGIN IMMEDIATE`` (a single writer),
so the same statement is serialised. A partial unique index allows one *running* job per dedupe key; the
claim passes over a queued job whose key is held by a running one (so it does not hold up the jobs behind
it), and a claim that still breaks the index (a race) is tried again.

Claims, heartbeats, completions and failures run on the raw driver (:mod:`registry.jobs.fastpath`, statements
in :mod:`registry.jobs.statements`); every change after the claim is fenced by the claim's lease token.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.bulk import BulkInsert
from registry.db.engine import readonly_session
from registry.db.jobs import Job, JobState
from registry.jobs import statements
from registry.jobs.fastpath import ConstraintViolation, Op, runner_for
from registry.jobs.protocol import ClaimedJob, LeaseLost, QueueStats
from registry.jobs.statements import Stmt

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
        self._runner = runner_for(sessions)
        bind = sessions.kw.get("bind")
        self._dialect = bind.dialect.name if bind is not None else "sqlite"

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

    async def enqueue_many(
        self, kind: str, jobs: Sequence[tuple[dict[str, Any], str | None]], *, session: AsyncSession
    ) -> None:
        if jobs:
            ins, rows = self.enqueue_rows(kind, jobs)
            stmt, params = ins.step(rows, self._dialect)
            await session.execute(stmt.stmt, params)

    def enqueue_rows(
        self, kind: str, jobs: Sequence[tuple[dict[str, Any], str | None]]
    ) -> tuple[BulkInsert, list[dict[str, Any]]]:
        now = utcnow()
        rows = [
            {
                "kind": kind,
                "payload": payload,
                "dedupe_key": key,
                "priority": 0,
                "state": JobState.QUEUED.value,
                "attempts": 0,
                "max_attempts": self.max_attempts,
                "run_after": now,
                "created_at": now,
            }
            for payload, key in jobs
        ]
        return statements.ENQUEUE, rows

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
        stmt = statements.claim(len(kinds))
        for _ in range(8):  # a lost race on the running-dedupe index: try again
            now = utcnow()
            token = secrets.token_hex(16)
            params: dict[str, Any] = {f"k{i}": k for i, k in enumerate(kinds)}
            params.update(now=now, owner=owner, token=token, expires=now + timedelta(seconds=self.lease_s))
            # Now and then bury jobs whose last attempt's lease ran out: in the claim's transaction on SQLite
            # (one hop), as a statement of its own before the claim on Postgres.
            reap = time.monotonic() - self._last_reap >= REAP_INTERVAL_S
            ops: list[Op] = [(statements.REAP, {"now": now})] if reap else []
            ops.append((stmt, params))
            try:
                rows = (await self._runner.run(*ops))[-1]
            except ConstraintViolation:
                continue
            if reap:
                self._last_reap = time.monotonic()
            if not rows:
                if not reap:  # an idle poll always does
                    self._last_reap = time.monotonic()
                    await self._runner.run((statements.REAP, {"now": now}))
                return None
            jid, kind, payload, attempts, max_attempts, dedupe_key = rows[0]
            return ClaimedJob(
                id=jid,
                kind=kind,
                payload=json.loads(payload) if isinstance(payload, str | bytes) else payload,
                attempts=attempts,
                max_attempts=max_attempts,
                lease_token=token,
                dedupe_key=dedupe_key,
            )
        return None

    async def _fenced(self, job: ClaimedJob, stmt: Stmt, **params: Any) -> None:
        """Run a fenced update; raise LeaseLost unless ``job``'s lease token still held the job."""
        (changed,) = await self._runner.run((stmt, {"job_id": job.id, "token": job.lease_token, **params}))
        if changed != 1:
            raise LeaseLost(job.id)

    async def heartbeat(self, job: ClaimedJob) -> None:
        await self._fenced(job, statements.HEARTBEAT, expires=utcnow() + timedelta(seconds=self.lease_s))

    async def complete(self, job: ClaimedJob) -> None:
        await self._fenced(job, statements.COMPLETE, now=utcnow())

    async def fail(
        self, job: ClaimedJob, error: str, *, retry_in_s: float | None = None, permanent: bool = False
    ) -> str:
        """Record a failed attempt; returns the new state (``queued`` for a retry, or ``dead``)."""
        error = error[:MAX_ERROR_LEN]
        now = utcnow()
        if permanent or job.attempts >= job.max_attempts:
            await self._fenced(job, statements.FAIL_DEAD, error=error, now=now)
            return JobState.DEAD.value
        delay = (
            retry_in_s
            if retry_in_s is not None
            else backoff_delay(job.attempts, self.backoff_base_s, self.backoff_max_s)
        )
        try:
            await self._fenced(
                job, statements.FAIL_RETRY, error=error, retry_at=now + timedelta(seconds=delay)
            )
        except ConstraintViolation:
            # The same work was queued again meanwhile (same dedupe key): that job supersedes this one.
            await self._fenced(job, statements.FAIL_CANCEL, error=error, now=now)
            return JobState.CANCELLED.value
        return JobState.QUEUED.value

    async def release(self, job: ClaimedJob) -> None:
        """Give a claimed job back untouched (graceful shutdown): the attempt does not count."""
        try:
            await self._fenced(job, statements.RELEASE, now=utcnow())
        except ConstraintViolation:
            # A job with the same dedupe key was queued meanwhile; that one will do the work.
            await self._fenced(job, statements.RELEASE_CANCEL, now=utcnow())

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
