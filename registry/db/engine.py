"""Async engine and sessions for SQLite (embedded default) and Postgres.

SQLite: WAL, foreign keys on, a busy timeout, and every write transaction opened with ``BEGIN IMMEDIATE``
so a reader never has to upgrade its lock mid-transaction (which SQLite answers with SQLITE_BUSY at once).
Read paths (anonymous GETs, token checks, listings, metrics) open ``readonly_session``, which begins
``DEFERRED``: it takes no write lock, so reads go on while a writer holds it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from registry.errors import DatabaseNotReady

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling is off; we emit BEGIN ourselves (below).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    mode = "DEFERRED" if conn.get_execution_options().get("readonly") else "IMMEDIATE"
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(
    url: str, *, pool_size: int = 10, connect_timeout_s: float = 5.0, echo: bool = False
) -> AsyncEngine:
    """Create the async engine for ``url`` with the per-database settings this project relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"timeout": connect_timeout_s, "command_timeout": 60},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def readonly_session(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for reads: on SQLite it takes no write lock (``BEGIN DEFERRED``)."""
    async with maker() as session:
        await session.connection(execution_options={"readonly": True})
        yield session


_WRITE_LOCKS: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def sqlite_write_lock(maker: async_sessionmaker[AsyncSession]) -> asyncio.Lock | None:
    """This process's queue for SQLite's one writer (per engine and event loop); None on other databases.

    Writers that would otherwise meet in SQLite's busy handler, which sleeps in growing steps (1 ms ... 100 ms)
    before it tries the lock again, take turns here instead and start the moment the previous one commits.
    Writers in other processes still meet in the busy handler.
    """
    bind = maker.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return None
    per_loop = _WRITE_LOCKS.setdefault(bind.sync_engine, weakref.WeakKeyDictionary())
    loop = asyncio.get_running_loop()
    lock = per_loop.get(loop)
    if lock is None:
        lock = per_loop[loop] = asyncio.Lock()
    return lock


@asynccontextmanager
async def write_session(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A write transaction (committed on leaving the block), queued behind this process's other SQLite writers
    that come through here. Not to be nested: the lock is not reentrant."""
    async with sqlite_write_lock(maker) or nullcontext(), maker() as s, s.begin():
        yield s


async def ping(engine: AsyncEngine) -> None:
    """Raise DatabaseNotReady with one sentence if the database cannot be reached."""
    from sqlalchemy import text

    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as e:
        safe = make_url(str(engine.url)).render_as_string(hide_password=True)
        raise DatabaseNotReady(
            f"cannot reach the database at {safe}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
