"""The queue's claim, reap and fenced-update statements: SQLAlchemy Core, built once, compiled once per dialect.

Each statement takes named ``bindparam``s. :meth:`Stmt.compiled` renders it for a dialect once and keeps the
bind processors of the columns' own types (aware UTC datetimes become what the ORM writes), so the hot paths
in :mod:`registry.jobs.fastpath` run the very same SQL on the raw driver with no per-call construction.

Job states are SQL literals, not parameters: Postgres can then match the partial unique indexes on
``state = 'queued'`` / ``state = 'running'`` in a generic plan of a prepared statement.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, func, literal_column, null, or_, select, text, update

from registry.db.bulk import BulkInsert
from registry.db.fastread import Query
from registry.db.jobs import Job, JobState

JOBS = cast(Table, Job.__table__)
_c = JOBS.c


def _state(s: JobState) -> Any:
    return literal_column(f"'{s.value}'")


QUEUED, RUNNING = _state(JobState.QUEUED), _state(JobState.RUNNING)
RETURNED = (_c.id, _c.kind, _c.payload, _c.attempts, _c.max_attempts, _c.dedupe_key)


Stmt = Query  # a statement compiled once per dialect (registry.db.fastread)


def _runnable(now: Any) -> Any:
    """Queued and due (and not held back by a running job with its dedupe key), or leased out and expired."""
    running = JOBS.alias("running_job")
    key_free = or_(
        _c.dedupe_key.is_(None),
        ~exists().where(running.c.state == RUNNING, running.c.dedupe_key == _c.dedupe_key),
    )
    return or_(
        and_(_c.state == QUEUED, _c.run_after <= now, key_free),
        and_(_c.state == RUNNING, _c.lease_expires_at < now, _c.attempts < _c.max_attempts),
    )


@lru_cache(maxsize=64)
def claim(n_kinds: int) -> Stmt:
    """Lease the most urgent runnable job among ``k0`` .. ``k{n-1}`` (one statement, RETURNING the job).

    Parameters: ``k0``.., ``now``, ``owner``, ``token``, ``expires``. On Postgres the candidate row is locked
    with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers take different jobs; SQLite ignores the clause
    (its writers are serialised by ``BEGIN IMMEDIATE``).
    """
    now = bindparam("now", type_=_c.run_after.type)
    kinds = [bindparam(f"k{i}", type_=_c.kind.type) for i in range(n_kinds)]
    candidate = (
        select(_c.id)
        .where(_c.kind.in_(kinds), _runnable(now))
        .order_by(_c.priority.desc(), _c.run_after, _c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return Stmt(
        update(JOBS)
        .where(_c.id == candidate)
        .values(
            state=RUNNING,
            attempts=_c.attempts + 1,
            lease_owner=bindparam("owner", type_=_c.lease_owner.type),
            lease_token=bindparam("token", type_=_c.lease_token.type),
            lease_expires_at=bindparam("expires", type_=_c.lease_expires_at.type),
            started_at=now,
        )
        .returning(*RETURNED)
    )


def _reap() -> Stmt:
    now = bindparam("now", type_=_c.run_after.type)
    return Stmt(
        update(JOBS)
        .where(_c.state == RUNNING, _c.lease_expires_at < now, _c.attempts >= _c.max_attempts)
        .values(
            state=_state(JobState.DEAD),
            finished_at=now,
            lease_owner=null(),
            lease_token=null(),
            lease_expires_at=null(),
            last_error=func.coalesce(_c.last_error, "worker lease expired (worker died?)"),
        )
    )


# A running job whose lease expired on its last allowed attempt is dead, not retried. Parameter: ``now``.
REAP = _reap()


def _fenced(**values: Any) -> Stmt:
    """Change a job only while ``token`` still holds its lease (parameters ``job_id``, ``token`` + ``values``'s).

    A worker whose lease was taken over updates no row, and the queue raises ``LeaseLost``.
    """
    return Stmt(
        update(JOBS)
        .where(
            _c.id == bindparam("job_id", type_=_c.id.type),
            _c.lease_token == bindparam("token", type_=_c.lease_token.type),
            _c.state == RUNNING,
        )
        .values(**values)
    )


def _p(name: str, column: str) -> Any:
    return bindparam(name, type_=_c[column].type)


_UNLEASED = {"lease_owner": null(), "lease_token": null(), "lease_expires_at": null()}

HEARTBEAT = _fenced(lease_expires_at=_p("expires", "lease_expires_at"))
COMPLETE = _fenced(state=_state(JobState.SUCCEEDED), finished_at=_p("now", "finished_at"), **_UNLEASED)
FAIL_DEAD = _fenced(
    state=_state(JobState.DEAD),
    last_error=_p("error", "last_error"),
    finished_at=_p("now", "finished_at"),
    **_UNLEASED,
)
FAIL_RETRY = _fenced(
    state=QUEUED, last_error=_p("error", "last_error"), run_after=_p("retry_at", "run_after"), **_UNLEASED
)
# fail() when the retry would clash with a job queued again meanwhile (same dedupe key): that one supersedes it
FAIL_CANCEL = _fenced(
    state=_state(JobState.CANCELLED),
    last_error=_p("error", "last_error"),
    finished_at=_p("now", "finished_at"),
    lease_token=null(),
)
RELEASE = _fenced(state=QUEUED, attempts=_c.attempts - 1, run_after=_p("now", "run_after"), **_UNLEASED)
RELEASE_CANCEL = _fenced(
    state=_state(JobState.CANCELLED), finished_at=_p("now", "finished_at"), lease_token=null()
)


ENQUEUED = (
    "kind",
    "payload",
    "dedupe_key",
    "priority",
    "state",
    "attempts",
    "max_attempts",
    "run_after",
    "created_at",
)
# INSERT INTO jobs ... ON CONFLICT (a dedupe key already queued) DO NOTHING: the queued job keeps its place. The
# partial index's predicate as a literal: a generic plan of a prepared statement can then use it.
ENQUEUE = BulkInsert(
    JOBS,
    ENQUEUED,
    lambda ins: ins.on_conflict_do_nothing(
        index_elements=["dedupe_key"], index_where=text("state = 'queued'")
    ),
)
