"""The job-queue seam: what workers and services need, whatever the database behind it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from registry.db.bulk import BulkInsert


@dataclass(frozen=True)
class ClaimedJob:
    """A job leased to one worker; ``lease_token`` fences every later write against a stale worker."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_token: str
    dedupe_key: str | None = None


@dataclass(frozen=True)
class QueueStats:
    depth: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, state) -> count
    oldest_queued_age_s: dict[str, float] = field(default_factory=dict)  # kind -> seconds


class LeaseLost(Exception):
    """The job's lease expired or was taken over; the worker must stop working on it."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"lease on job {job_id} was lost")
        self.job_id = job_id


class RetryJob(Exception):
    """Raised by a handler to retry later (counts as an attempt)."""

    def __init__(self, reason: str, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class PermanentJobError(Exception):
    """Raised by a handler when retrying cannot help: the job goes straight to ``dead``."""


class JobQueue(Protocol):
    """The one job-queue seam. ``session`` enqueues inside the caller's transaction (the job commits with
    the change that needs it); without it the queue opens its own."""

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
    ) -> int: ...

    async def enqueue_many(
        self, kind: str, jobs: Sequence[tuple[dict[str, Any], str | None]], *, session: AsyncSession
    ) -> None:
        """Several jobs of ``kind`` ((payload, dedupe key) each) in the caller's transaction, in one statement;
        a dedupe key already queued keeps its job, as with ``enqueue``."""
        ...

    def enqueue_rows(
        self, kind: str, jobs: Sequence[tuple[dict[str, Any], str | None]]
    ) -> tuple[BulkInsert, list[dict[str, Any]]]:
        """The insert and rows that enqueue ``jobs`` as ``enqueue_many`` does, for a caller's own statement
        on the raw driver (registry.jobs.fastpath, registry.db.bulk)."""
        ...

    async def claim(self, kinds: Sequence[str], owner: str) -> ClaimedJob | None: ...

    async def heartbeat(self, job: ClaimedJob) -> None: ...

    async def complete(self, job: ClaimedJob) -> None: ...

    async def fail(
        self, job: ClaimedJob, error: str, *, retry_in_s: float | None = None, permanent: bool = False
    ) -> str: ...

    async def release(self, job: ClaimedJob) -> None: ...

    async def stats(self) -> QueueStats: ...
