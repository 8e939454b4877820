"""The snapshot clock (registry.db.remember.SnapshotClock): every caller gets a snapshot taken after it arrived,
callers waiting at once share one statement, a caller that goes away cancels nothing else, and a connection
that broke is replaced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.db.fastread import FastReads
from registry.db.remember import SNAPSHOT, SnapshotClock
from tests.registry.db.test_coalesced_reads import until


class Conn:
    """A connection whose statements wait for ``release()`` and answer "snap-N" (N: the statement's number)."""

    def __init__(self, clock_source: Source) -> None:
        self.source = clock_source
        self.closed = self.terminated = False

    async def fetchval(self, query: str) -> Any:
        assert query == SNAPSHOT
        src = self.source
        src.started += 1
        n = src.started
        if src.fail_next:
            src.fail_next -= 1
            raise ConnectionError(f"statement {n} failed")
        gate = src.gates.setdefault(n, asyncio.Event())
        await gate.wait()
        return f"snap-{n}"

    async def close(self) -> None:
        self.closed = True

    def terminate(self) -> None:
        self.terminated = True


class Source:
    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.started = 0
        self.fail_next = 0
        self.gates: dict[int, asyncio.Event] = {}

    async def connect(self) -> Conn:
        self.conns.append(Conn(self))
        return self.conns[-1]

    def release(self, n: int) -> None:
        self.gates.setdefault(n, asyncio.Event()).set()


@pytest.fixture
async def src() -> Source:
    return Source()


async def test_callers_waiting_at_once_share_a_statement_and_latecomers_get_the_next(src: Source) -> None:
    clock = SnapshotClock(src.connect)
    first = [asyncio.ensure_future(clock.now()) for _ in range(3)]
    await until(lambda: src.started == 1, "the first statement runs")
    late = [asyncio.ensure_future(clock.now()) for _ in range(2)]  # it may have been taken before they came
    src.release(1)
    assert await asyncio.gather(*first) == ["snap-1"] * 3
    await until(lambda: src.started == 2, "the next statement runs for the latecomers")
    assert not any(f.done() for f in late)
    src.release(2)
    assert await asyncio.gather(*late) == ["snap-2"] * 2
    assert clock.statements == 2 and len(src.conns) == 1  # one connection, kept
    await clock.close()
    assert src.conns[0].closed


async def test_a_caller_that_goes_away_cancels_nothing_else(src: Source) -> None:
    clock = SnapshotClock(src.connect)
    leaving, staying = asyncio.ensure_future(clock.now()), asyncio.ensure_future(clock.now())
    await until(lambda: src.started == 1, "the statement runs")
    leaving.cancel()
    src.release(1)
    assert await staying == "snap-1"
    assert leaving.cancelled()
    src.release(2)
    assert await clock.now() == "snap-2"  # the clock runs on
    await clock.close()


async def test_a_broken_connection_is_replaced_and_a_second_failure_reaches_the_callers(src: Source) -> None:
    clock = SnapshotClock(src.connect)
    src.release(1)
    assert await clock.now() == "snap-1"
    src.fail_next = 1  # the kept connection broke: once more, on a new one
    src.release(3)
    assert await clock.now() == "snap-3"
    assert len(src.conns) == 2 and src.conns[0].terminated
    src.fail_next = 2  # the new connection fails too: the callers hear it
    waiting = [asyncio.ensure_future(clock.now()) for _ in range(2)]
    for fut in waiting:
        with pytest.raises(ConnectionError, match="statement 5 failed"):
            await fut
    assert len(src.conns) == 3 and src.conns[1].terminated and src.conns[2].terminated
    src.release(6)
    assert await clock.now() == "snap-6"  # and the next caller opens another
    await clock.close()


async def test_closing_cancels_whoever_waits(src: Source) -> None:
    clock = SnapshotClock(src.connect)
    waiting = asyncio.ensure_future(clock.now())
    await until(lambda: src.started == 1, "the statement runs")
    behind = asyncio.ensure_future(clock.now())
    await asyncio.sleep(0)
    await clock.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(asyncio.CancelledError):
        await behind
    assert src.conns[0].closed
    with pytest.raises(RuntimeError, match="closed"):  # no connection opened past its owner's close
        await clock.now()
    assert len(src.conns) == 1


pg_only = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def _backend_of(engine: AsyncEngine, reads: FastReads) -> int:
    """The pid of the clock's backend: the session in this database running its statement last."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = :q "
                    "AND pid <> pg_backend_pid()"
                ),
                {"q": SNAPSHOT},
            )
        ).all()
    assert len(rows) == 1, rows
    return int(rows[0][0])


@pg_only
async def test_on_postgres_a_commit_moves_the_clock_and_a_killed_session_is_replaced(
    engine: AsyncEngine,
) -> None:
    reads = FastReads(engine, pool_size=1)
    try:
        before = await reads.clock.now()
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE probe (x INTEGER)"))
        assert await reads.clock.now() != before  # taken after the commit
        pid = await _backend_of(engine, reads)
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert ":" in await reads.clock.now()  # answered from a new session, no error
        assert await _backend_of(engine, reads) != pid
    finally:
        await reads.close()
