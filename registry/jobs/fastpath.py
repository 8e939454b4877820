"""The queue's writes on the raw driver: each claim or fenced update is one statement, one hop, no ORM.

Through the ORM on the async drivers a claim cost ~15 hops to aiosqlite's thread (BEGIN, cursor, execute,
fetch, close, commit, each its own) or, on Postgres, a pool pre-ping (``BEGIN; ;ROLLBACK``) and ``BEGIN`` /
``COMMIT`` round trips beside the statement, plus statement construction and a greenlet switch per call. Here:

* SQLite: one ``sqlite3`` connection of the queue's own on one thread; a call runs its statements as one
  ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction there (one hop), with the engine's pragmas and busy timeout.
* Postgres: a few asyncpg connections of the queue's own; each statement runs on its own (an implicit transaction,
  one round trip; the claim locks its row with ``FOR UPDATE SKIP LOCKED``), prepared once per connection.
* Anything else (an in-memory SQLite database, private to its connection): the same statements through
  SQLAlchemy sessions.

The statements and their parameters' processing are :mod:`registry.jobs.statements`'s; the connections here are
closed when the engine is disposed (and opened again if it is used after that). :meth:`Runner.plan` runs a
caller's own transaction the same way: a generator of steps with its logic between them (the pin service's
batch of adds, :mod:`registry.pinning.adds`).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Callable, Generator, Sequence
from queue import SimpleQueue
from typing import Any, Protocol, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from registry.db.engine import SQLITE_BUSY_TIMEOUT_MS
from registry.db.fastread import Compiled
from registry.jobs.statements import Stmt

T = TypeVar("T")
Op = tuple[Stmt, dict[str, Any]]
# A plan: a generator that yields steps and receives each one's result; what it returns is the plan's result.
# A step is (statement, params) -> its rows (RETURNING / SELECT) or the count of rows changed, or
# (statement, [params, ...]) -> None (executemany). Its logic runs between the steps, inside the transaction
# (on SQLite in the runner's thread: plain computation only).
Step = tuple[Stmt, dict[str, Any] | list[dict[str, Any]]]
Plan = Generator[Step, Any, T]
PG_POOL_SIZE = 4  # connections at most: the claim loop, heartbeats and completions of a worker share them
PG_CONNECT_TIMEOUT_S = 5.0
PG_COMMAND_TIMEOUT_S = 60.0
_SA_ONLY_ARGS = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


class ConstraintViolation(Exception):
    """A statement broke a constraint (a dedupe key's unique index); nothing it did was kept."""


class Runner(Protocol):
    async def run(self, *ops: Op) -> list[Any]:
        """Run ``ops`` in order: one transaction on SQLite, one implicit transaction each on Postgres.

        Each result is the rows (a statement with RETURNING) or the number of rows changed.
        """
        ...

    async def plan(self, plan: Plan[T], *, atomic: bool = True) -> T:
        """Run ``plan`` in one transaction (all of it or nothing: an exception rolls it back). With ``atomic``
        false, Postgres runs each step on its own (one round trip each, no BEGIN/COMMIT): for a plan whose
        writes are one statement; SQLite runs it in one transaction all the same (it costs nothing there)."""
        ...

    def close(self) -> None: ...


def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _advance(plan: Plan[T], result: Any) -> tuple[bool, Any]:
    """Hands ``result`` to ``plan``: (True, the plan's own result) once it is done, else (False, its next step)."""
    try:
        return False, plan.send(result)
    except StopIteration as done:
        return True, done.value


async def _drive(plan: Plan[T], execute: Callable[[Stmt, Any], Awaitable[Any]]) -> T:
    """Runs ``plan`` to its end, each step through ``execute`` (an async driver's statement)."""
    result: Any = None
    while True:
        finished, step = _advance(plan, result)
        if finished:
            return step
        result = await execute(*step)


def _sqlite_transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = body(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


def _sqlite_ops(ops: Sequence[tuple[Compiled, list[Any]]]) -> Callable[[sqlite3.Connection], list[Any]]:
    def body(conn: sqlite3.Connection) -> list[Any]:
        out: list[Any] = []
        for c, args in ops:
            cur = conn.execute(c.sql, args)
            out.append(cur.fetchall() if c.returning else cur.rowcount)
        return out

    return body


def _sqlite_plan(plan: Plan[T], dialect: Any) -> Callable[[sqlite3.Connection], T]:
    def body(conn: sqlite3.Connection) -> T:
        result: Any = None
        while True:
            finished, step = _advance(plan, result)
            if finished:
                return step
            stmt, params = step
            c = stmt.compiled(dialect)
            if isinstance(params, list):
                conn.executemany(c.sql, [c.args(p) for p in params])
                result = None
            else:
                cur = conn.execute(c.sql, c.args(params))
                result = [c.row(r) for r in cur.fetchall()] if c.returning else cur.rowcount

    return body


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled; the transaction ran (or failed) all the same
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)


def _sqlite_thread(path: str, calls: SimpleQueue[Any]) -> None:
    """Run transactions in arrival order on one connection until ``None`` arrives, then close it."""
    conn: sqlite3.Connection | None = None
    while (call := calls.get()) is not None:
        fut, body = call
        result, error = None, None
        try:
            conn = conn or _sqlite_connect(path)
            result = _sqlite_transaction(conn, body)
        except BaseException as e:  # handed to the caller
            error = e
        try:
            fut.get_loop().call_soon_threadsafe(_settle, fut, result, error)
        except RuntimeError:  # that event loop is closed: nobody waits for this
            pass
    if conn is not None:
        conn.close()


class _SqliteRunner:
    """One connection on one thread: every call is ``BEGIN IMMEDIATE``; statements; ``COMMIT`` (one hop)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._path = str(engine.url.database)
        self._dialect = engine.dialect
        self._calls: SimpleQueue[Any] | None = None
        self._pid = 0  # a forked child inherits the queue but not the thread

    def _start(self) -> SimpleQueue[Any]:
        calls: SimpleQueue[Any] = SimpleQueue()
        threading.Thread(
            target=_sqlite_thread, args=(self._path, calls), name="jobs-sqlite", daemon=True
        ).start()
        weakref.finalize(self, calls.put, None)  # the thread ends with this runner
        self._calls, self._pid = calls, os.getpid()
        return calls

    async def _call(self, body: Callable[[sqlite3.Connection], T]) -> T:
        calls = self._calls if self._calls is not None and self._pid == os.getpid() else self._start()
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        calls.put((fut, body))
        try:
            return await fut
        except sqlite3.IntegrityError as e:
            raise ConstraintViolation(str(e)) from e

    async def run(self, *ops: Op) -> list[Any]:
        compiled = [(c, c.args(params)) for c, params in ((s.compiled(self._dialect), p) for s, p in ops)]
        return await self._call(_sqlite_ops(compiled))

    async def plan(self, plan: Plan[T], *, atomic: bool = True) -> T:
        return await self._call(_sqlite_plan(plan, self._dialect))

    def close(self) -> None:
        calls, self._calls = self._calls, None
        if calls is not None:
            calls.put(None)  # after the calls already queued


class _PgRunner:
    """A few asyncpg connections of our own; each statement is its own implicit transaction (one round trip).

    Not asyncpg's pool: its release costs a task and a reset round trip; nothing here sets session state. A
    connection that saw anything but a statement error (a broken socket, a cancelled call) is dropped.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._dialect = engine.dialect
        _args, kw = engine.dialect.create_connect_args(engine.url)
        for k in _SA_ONLY_ARGS:
            kw.pop(k, None)
        kw.setdefault("timeout", PG_CONNECT_TIMEOUT_S)
        kw.setdefault("command_timeout", PG_COMMAND_TIMEOUT_S)
        self._connect_kw = kw
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(PG_POOL_SIZE)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _acquire(self) -> Any:
        import asyncpg

        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections of another event loop cannot serve this one
            self.close()
            self._loop, self._slots = loop, asyncio.Semaphore(PG_POOL_SIZE)
        await self._slots.acquire()
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
        try:
            return await asyncpg.connect(**self._connect_kw)
        except BaseException:
            self._slots.release()
            raise

    def _release(self, conn: Any, reusable: bool) -> None:
        self._slots.release()
        if reusable and not conn.is_closed() and not conn.is_in_transaction():
            self._idle.append(conn)
        else:
            conn.terminate()

    async def _step(self, conn: Any, stmt: Stmt, params: dict[str, Any]) -> Any:
        c = stmt.compiled(self._dialect)
        if c.returning:
            return await conn.fetch(c.sql, *c.args(params))
        status = await conn.execute(c.sql, *c.args(params))  # e.g. "UPDATE 1"
        return int(status.rpartition(" ")[2])

    async def run(self, *ops: Op) -> list[Any]:
        return await self._on_connection(self._ops, ops)

    async def _ops(self, conn: Any, ops: Sequence[Op]) -> list[Any]:
        return [await self._step(conn, s, params) for s, params in ops]

    async def plan(self, plan: Plan[T], *, atomic: bool = True) -> T:
        return await self._on_connection(self._plan if atomic else self._steps, plan)

    async def _plan(self, conn: Any, plan: Plan[T]) -> T:
        async with conn.transaction():
            return await self._steps(conn, plan)

    async def _steps(self, conn: Any, plan: Plan[T]) -> T:
        async def execute(stmt: Stmt, params: dict[str, Any] | list[dict[str, Any]]) -> Any:
            c = stmt.compiled(self._dialect)
            if isinstance(params, list):
                await conn.executemany(c.sql, [c.args(p) for p in params])
                return None
            rows = await self._step(conn, stmt, params)
            return [c.row(r) for r in rows] if stmt.returning else rows

        return await _drive(plan, execute)

    async def _on_connection(self, body: Callable[[Any, Any], Any], arg: Any) -> Any:
        import asyncpg

        conn = await self._acquire()
        reusable = False
        try:
            out = await body(conn, arg)
            reusable = True
        except asyncpg.IntegrityConstraintViolationError as e:
            reusable = True
            raise ConstraintViolation(str(e)) from e
        except asyncpg.PostgresError:
            reusable = True
            raise
        finally:
            self._release(conn, reusable)
        return out

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                conn.terminate()
            except RuntimeError:  # its event loop is gone: so is its transport
                pass


class _SessionRunner:
    """The same statements through SQLAlchemy (one transaction per call)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def run(self, *ops: Op) -> list[Any]:
        out: list[Any] = []
        try:
            async with self._sessions() as s, s.begin():
                for stmt, params in ops:
                    res = await s.execute(stmt.stmt, params)
                    out.append(res.all() if stmt.returning else res.rowcount)  # type: ignore[attr-defined]
        except IntegrityError as e:
            raise ConstraintViolation(str(e)) from e
        return out

    async def plan(self, plan: Plan[T], *, atomic: bool = True) -> T:
        try:
            async with self._sessions() as s, s.begin():

                async def execute(stmt: Stmt, params: dict[str, Any] | list[dict[str, Any]]) -> Any:
                    res = await s.execute(stmt.stmt, params)
                    if isinstance(params, list):
                        return None
                    return [tuple(r) for r in res.all()] if stmt.returning else res.rowcount  # type: ignore[attr-defined]

                return await _drive(plan, execute)
        except IntegrityError as e:
            raise ConstraintViolation(str(e)) from e

    def close(self) -> None:
        pass


def runner_for(sessions: async_sessionmaker[AsyncSession]) -> Runner:
    """The fastest runner for the database behind ``sessions``; it closes when that engine is disposed."""
    engine = sessions.kw.get("bind")
    runner: _SqliteRunner | _PgRunner
    if not isinstance(engine, AsyncEngine):
        return _SessionRunner(sessions)
    backend, db = engine.url.get_backend_name(), engine.url.database
    if backend == "sqlite" and db and db != ":memory:" and not db.startswith("file:"):
        runner = _SqliteRunner(engine)
    elif backend == "postgresql" and engine.dialect.driver == "asyncpg":
        runner = _PgRunner(engine)
    else:
        return _SessionRunner(sessions)
    ref = weakref.ref(runner)

    def on_dispose(_engine: Any) -> None:
        r = ref()
        if r is not None:
            r.close()

    event.listen(engine.sync_engine, "engine_disposed", on_dispose)
    return runner
