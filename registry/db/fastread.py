"""Hot reads on the raw driver: SQLAlchemy Core SELECTs compiled once per dialect, run without a Session.

The request paths users hit most (pointer resolve, pack detail, model lists) cost ~2-3 ms of CPU each through the
ORM on the async drivers: statement construction, compilation lookups, a greenlet switch and (on SQLite) a hop
to aiosqlite's thread per statement. Here each statement is built and compiled once; its parameters and rows
pass through the column types' own bind and result processors, so values are exactly what the ORM would return
(aware UTC datetimes, enum members).

SQLite: a few ``sqlite3`` connections of our own beside the engine's, ``PRAGMA query_only``, run on the event
loop itself. In WAL mode a reader never waits for the writer, and an indexed read costs tens of microseconds,
less than a hop to a thread; the busy timeout bounds the rare wait (WAL recovery after a crash) to
:data:`SQLITE_READ_BUSY_MS`. Postgres: an asyncpg pool beside SQLAlchemy's, with asyncpg's prepared-statement
cache. :meth:`FastReads.snapshot` gives several reads one consistent view (one read transaction).

Postgres reads coalesce (:meth:`FastReads.coalesced`, :meth:`FastReads.batched`; registry.db.coalesce): at most
one read of a kind runs at a time, and the reads of that kind that arrive meanwhile wait and run together, as one
statement over all their keys (identical keys share one result): a fleet resolving pointers costs one round
trip at a time, however many ask. A batch is joined only before it starts, so every caller gets a state of the
database at least as new as its own arrival: the same freshness as reading alone.

SQLite coalesced reads are remembered instead (:data:`MEMO_ENTRIES` of them) with the database's
``PRAGMA data_version`` read just before them, on a connection of ours that never writes: SQLite changes that
number whenever any other connection (this daemon's writer, another process) commits. A read whose key is
remembered under the current number returns the remembered result: nothing was committed since it was read,
so reading again would give the same rows. Never stale, and one ~4 us PRAGMA instead of the statements.

That number is read at most once per pass of the event loop (:meth:`FastReads.data_version`): its read at time
*v* queues a callback that forgets it, and asyncio runs its ready callbacks first in, first out, so the number
serves only work queued before *v*. Anything that happens after *v* (a request received, a write's completion
handed back from its thread, a timer) is queued after that callback and reads the number again: a request
still sees every commit that completed before it arrived. A fleet of requests handled in one pass pays one
PRAGMA between them. (Only code that blocks the loop on another process's commit and reads again in the same
step could see the older number; nothing in the daemon does.)

Postgres coalesced reads are remembered too, under a snapshot taken before them (registry.db.remember).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeVar

from sqlalchemy import Select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.cache import Memo
from registry.db.coalesce import Coalescer
from registry.db.remember import SnapshotClock, SnapshotMemo

SQLITE_READ_BUSY_MS = 2_000
# coalesced reads remembered with the data_version (SQLite) or snapshot (Postgres) taken before their read
MEMO_ENTRIES = 2_048
AnySelect: TypeAlias = Select[*tuple[Any, ...]]
Row = tuple[Any, ...]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement rendered for one dialect, with its parameters' and columns' processors."""

    sql: str
    names: tuple[str, ...]  # the positional parameters' names, in order (a name may repeat)
    defaults: dict[str, Any]  # values bound inside the statement (limits, literals)
    binds: tuple[Callable[[Any], Any] | None, ...]
    results: tuple[Callable[[Any], Any] | None, ...]  # per selected column (a SELECT's)
    returning: bool  # rows come back (a SELECT, or RETURNING); else a count of rows changed
    processed: tuple[tuple[int, Callable[[Any], Any]], ...] = ()  # (column, processor) where there is one

    def args(self, params: dict[str, Any]) -> list[Any]:
        vals = {**self.defaults, **params} if self.defaults else params
        return [
            v if p is None else p(v) for p, v in zip(self.binds, (vals[n] for n in self.names), strict=True)
        ]

    def row(self, raw: Sequence[Any]) -> Row:
        if len(raw) != len(self.results):
            raise ValueError(f"{len(raw)} columns where the statement selects {len(self.results)}")
        out = list(raw)
        for i, p in self.processed:  # most columns need none: only these are touched
            v = out[i]
            if v is not None:
                out[i] = p(v)
        return tuple(out)


class Query:
    """A Core statement with named ``bindparam``s, compiled once per dialect (registry.jobs uses it for its
    claim and fenced updates too)."""

    __slots__ = ("_by_dialect", "returning", "stmt")

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self.returning = isinstance(stmt, Select) or bool(
            getattr(stmt, "returning_column_descriptions", None)
        )
        self._by_dialect: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        c = self._by_dialect.get(dialect.name)
        if c is None:
            c = self._by_dialect[dialect.name] = _compile(self.stmt, self.returning, dialect)
        return c


def _compile(stmt: Any, returning: bool, dialect: Dialect) -> Compiled:
    comp = stmt.compile(dialect=dialect)
    if "POSTCOMPILE" in comp.string:
        raise ValueError("fast reads take no expanding IN parameters; use a subquery")
    names = tuple(comp.positiontup or ())
    defaults = {k: v for k, v in comp.construct_params(_check=False).items() if v is not None}
    # The types' cached, dialect-specific processors: what the ORM applies to the same columns.
    binds = tuple(comp.binds[n].type._cached_bind_processor(dialect) for n in names)
    columns = stmt.selected_columns if isinstance(stmt, Select) else ()
    results = tuple(c.type._cached_result_processor(dialect, None) for c in columns)
    processed = tuple((i, p) for i, p in enumerate(results) if p is not None)
    return Compiled(comp.string, names, defaults, binds, results, returning, processed)


class Snapshot(Protocol):
    async def all(self, q: Query, **params: Any) -> list[Row]: ...

    async def first(self, q: Query, **params: Any) -> Row | None: ...


def _sqlite_all(conn: sqlite3.Connection, c: Compiled, params: dict[str, Any]) -> list[Row]:
    return [c.row(r) for r in conn.execute(c.sql, c.args(params)).fetchall()]


def _sqlite_first(conn: sqlite3.Connection, c: Compiled, params: dict[str, Any]) -> Row | None:
    raw = conn.execute(c.sql, c.args(params)).fetchone()
    return None if raw is None else c.row(raw)


class _SqliteSnap:
    __slots__ = ("_conn", "_dialect")

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        self._conn, self._dialect = conn, dialect

    async def all(self, q: Query, **params: Any) -> list[Row]:
        return _sqlite_all(self._conn, q.compiled(self._dialect), params)

    async def first(self, q: Query, **params: Any) -> Row | None:
        return _sqlite_first(self._conn, q.compiled(self._dialect), params)


class _PgSnap:
    __slots__ = ("_conn", "_dialect")

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn, self._dialect = conn, dialect

    async def all(self, q: Query, **params: Any) -> list[Row]:
        c = q.compiled(self._dialect)
        return [c.row(r) for r in await self._conn.fetch(c.sql, *c.args(params))]

    async def first(self, q: Query, **params: Any) -> Row | None:
        c = q.compiled(self._dialect)
        raw = await self._conn.fetchrow(c.sql, *c.args(params))
        return None if raw is None else c.row(raw)


async def _keep(_conn: Any) -> None:
    """A released connection needs no reset: its sessions are read-only and set no state."""


def _one(_: object) -> int:
    return 1


class FastReads:
    """Read-only access beside ``engine`` for the hot paths; :meth:`close` when the engine is disposed."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
        remember: bool = True,
    ) -> None:
        """``remember=False``: coalesced reads are not remembered (each runs its statement), to test the
        coalescing alone."""
        self._url = make_url(str(engine.url.render_as_string(hide_password=False)))
        self.dialect = engine.dialect
        self._sqlite = self._url.get_backend_name() == "sqlite"
        self._pool_size = pool_size
        self._timeout = connect_timeout_s
        self._idle: list[sqlite3.Connection] = []
        self._pg: Any = None
        self._pg_lock = asyncio.Lock()
        self._closed = False
        # Postgres: coalesced reads, one of a kind at a time, at most the pool's size at once (registry.db.coalesce)
        self.coalescer = Coalescer(pool_size)
        # key -> (SQLite: data_version, from _watch; Postgres: snapshot; taken before the read, its result)
        self._memo: Memo[Hashable, tuple[object, Any]] = Memo(MEMO_ENTRIES, MEMO_ENTRIES, _one)
        self._watch: sqlite3.Connection | None = None
        self._remember = remember
        self.clock = SnapshotClock(self._pg_connect)  # snapshots for the memo's checks (registry.db.remember)
        self._pg_memo = SnapshotMemo(self._memo, self.clock.now)
        self._version: int | None = None  # data_version for the rest of this pass of the event loop

    # ------------------------------------------------------------------ SQLite

    def _sqlite_conn(self) -> sqlite3.Connection:
        if self._idle:
            return self._idle.pop()
        path = self._url.database
        if not path or path == ":memory:":
            raise RuntimeError(
                "fast reads need a file database (an in-memory one is private to its connection)"
            )
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={SQLITE_READ_BUSY_MS}")
        conn.execute("PRAGMA query_only=ON")
        return conn

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version`` on a connection that never writes: it changes whenever another
        connection commits (a read transaction or a rollback leaves it alone). Read once per pass of the event
        loop (see the module's doc)."""
        version = self._version
        if version is not None:
            return version
        if self._watch is None:
            self._watch = self._sqlite_conn()
        version = int(self._watch.execute("PRAGMA data_version").fetchone()[0])
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop, no passes: nothing to keep it for
            return version
        self._version = version
        loop.call_soon(self._forget_version)  # runs before anything queued after this read
        return version

    def _forget_version(self) -> None:
        self._version = None

    def _sqlite_release(self, conn: sqlite3.Connection) -> None:
        if self._closed or len(self._idle) >= self._pool_size:
            conn.close()
        else:
            self._idle.append(conn)

    # ------------------------------------------------------------------ Postgres

    async def _pg_pool(self) -> Any:
        if self._pg is None:
            async with self._pg_lock:
                if self._pg is None:
                    import asyncpg

                    self._pg = await asyncpg.create_pool(
                        self._pg_dsn(),
                        min_size=0,
                        max_size=self._pool_size,
                        reset=_keep,  # read-only sessions that set nothing: no reset round trip per release
                        **self._pg_settings(),
                    )
        return self._pg

    def _pg_dsn(self) -> str:
        return self._url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _pg_settings(self) -> dict[str, Any]:
        return {
            "timeout": self._timeout,
            "command_timeout": 60,
            "server_settings": {"default_transaction_read_only": "on"},
        }

    async def _pg_connect(self) -> Any:
        """The snapshot clock's own connection, set up as the pool's are."""
        import asyncpg

        return await asyncpg.connect(self._pg_dsn(), **self._pg_settings())

    # ------------------------------------------------------------------ reads

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        """Several reads seeing one consistent state of the database (one read-only transaction)."""
        if self._sqlite:
            conn = self._sqlite_conn()
            try:
                conn.execute("BEGIN")
                try:
                    yield _SqliteSnap(conn, self.dialect)
                finally:
                    conn.execute("COMMIT")
            finally:
                self._sqlite_release(conn)
            return
        pool = await self._pg_pool()
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield _PgSnap(conn, self.dialect)

    async def all(self, q: Query, **params: Any) -> list[Row]:
        """One statement's rows."""
        if self._sqlite:  # the hot path, without a context manager's frames
            conn = self._sqlite_conn()
            try:
                return _sqlite_all(conn, q.compiled(self.dialect), params)
            finally:
                self._sqlite_release(conn)
        pool = self._pg if self._pg is not None else await self._pg_pool()
        async with pool.acquire() as pg:  # no generator-based context manager: its frames cost per request
            return await _PgSnap(pg, self.dialect).all(q, **params)

    async def first(self, q: Query, **params: Any) -> Row | None:
        """The first row (or None) of one statement."""
        if self._sqlite:
            conn = self._sqlite_conn()
            try:
                return _sqlite_first(conn, q.compiled(self.dialect), params)
            finally:
                self._sqlite_release(conn)
        pool = self._pg if self._pg is not None else await self._pg_pool()
        async with pool.acquire() as pg:
            return await _PgSnap(pg, self.dialect).first(q, **params)

    async def coalesced(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """``await read()``, shared with the identical reads (equal ``key``) that wait with it.

        ``read`` must depend on ``key`` alone and return a value its callers do not change. On SQLite a read
        runs on the loop at once, so nothing queues; its result is remembered with the database's data_version
        and returned again until another connection commits (see the module's doc). On Postgres at most one
        read of a key runs at a time; the identical reads that arrive meanwhile share the next one, which starts
        after they arrived (registry.db.coalesce), and it is remembered under the snapshot it was read after.
        """
        if self._sqlite and not self._remember:
            return await read()
        if self._sqlite:
            version = self.data_version()  # before the read: a commit during it only makes the entry miss
            hit = self._memo.get(key)
            if hit is not None and hit[0] == version:
                remembered: T = hit[1]
                return remembered
            result = await read()
            self._memo.put(key, (version, result))
            return result
        if not self._remember:
            return await self.coalescer.read(key, read)
        return await self._pg_memo.get(key, lambda: self.coalescer.read(key, read))

    async def batched(
        self,
        kind: Hashable,
        key: Hashable,
        one: Callable[[], Awaitable[T]],
        many: Callable[[list[Any]], Awaitable[Mapping[Any, T]]],
    ) -> T:
        """``key``'s value: on Postgres ``one()`` when nothing of ``kind`` is running, else one ``many(keys)`` for
        every key of ``kind`` that waits (registry.db.coalesce); each value remembered as :meth:`coalesced`
        does."""
        if self._sqlite:
            return await self.coalesced((kind, key), one)

        def run() -> Awaitable[T]:
            return self.coalescer.run(kind, key, one, many)

        if not self._remember:
            return await run()
        return await self._pg_memo.get((kind, key), run)

    async def close(self) -> None:
        self._closed = True
        self.coalescer.close()
        await self.clock.close()
        while self._idle:
            self._idle.pop().close()
        self._version = None
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        if self._pg is not None:
            pool, self._pg = self._pg, None
            await pool.close()
