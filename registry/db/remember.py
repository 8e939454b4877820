"""Remembered reads on Postgres (registry.db.fastread.FastReads.coalesced and .batched).

A read's result is remembered under a Postgres snapshot (``pg_current_snapshot()``: xmin, xmax, in-progress ids)
taken before the read started. Two equal snapshots see exactly the same committed transactions, and every
transaction that ends changes the snapshot for good (its id leaves the in-progress list, or xmax moves past it),
so a result is as fresh as a new read while the current snapshot still equals its tag: nothing has committed
since, so nothing between the tag and the read either. Any commit in the cluster (another database's too) makes
the next read of every key run its statement again.

A request whose key is remembered under the newest snapshot seen asks for a snapshot taken after it arrived
(one small statement on a connection of its own, shared by every request that waits for one: SnapshotClock) and,
if that is still the tag, returns the remembered result. Otherwise, or when its key is not remembered under the
newest snapshot seen, it reads (coalesced or batched, as before), and the result is remembered under that newest
snapshot, which was taken before the read. Keys read once (a fleet spread over many pointers) cost what they
did; keys read again cost one shared small statement while nothing commits, and it again just after a commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol, TypeVar

from registry.cache import Memo
from registry.db.coalesce import settle

T = TypeVar("T")
SNAPSHOT = "SELECT pg_current_snapshot()::text"  # the snapshot a statement runs under, as text


class SnapshotMemo:
    """Results remembered under the snapshot taken before their read; ``fresh()`` gives a snapshot taken after
    its call (SnapshotClock.now, shared by the callers waiting at once)."""

    def __init__(self, memo: Memo[Hashable, tuple[object, Any]], fresh: Callable[[], Awaitable[str]]) -> None:
        self._memo = memo
        self._fresh = fresh
        self.last: str | None = None  # the newest snapshot seen

    async def _now(self) -> str:
        now = self.last = await self._fresh()
        return now

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """``key``'s remembered result while the snapshot is its tag's, else ``read()``'s (then remembered)."""
        hit = self._memo.get(key)
        last = self.last
        if hit is not None and hit[0] == last:
            now = await self._now()
            if now == last:
                remembered: T = hit[1]
                return remembered
            last = now
        elif last is None:
            last = await self._now()
        result = await read()  # starts after ``last`` was taken: a valid tag
        self._memo.put(key, (last, result))
        return result


class SnapshotConnection(Protocol):
    """What SnapshotClock needs of a connection (an asyncpg one)."""

    async def fetchval(self, query: str) -> Any: ...

    async def close(self) -> None: ...

    def terminate(self) -> None: ...


class SnapshotClock:
    """``pg_current_snapshot()`` taken after each caller of :meth:`now` arrived, on a connection of its own.

    Callers that arrive while no statement runs share the next one; callers that arrive while one runs share
    the one after it (the running one may have been taken before they came). One task runs the statements,
    one after another, while anyone waits; a caller that goes away cancels only its own wait. A statement that
    fails on a connection used before (Postgres restarted, or ended an idle session) runs once more on a new
    one; if that fails too, the callers that waited for it get the error. Cheaper than a coalesced read from
    the pool (no slot, no pool acquire, no task or shield per batch): the check runs for nearly every
    remembered read on a busy daemon.
    """

    def __init__(self, connect: Callable[[], Awaitable[SnapshotConnection]]) -> None:
        self._connect = connect
        self._conn: SnapshotConnection | None = None
        self._waiting: list[asyncio.Future[str]] = []  # the callers of the next statement
        self._runner: asyncio.Task[None] | None = None
        self.statements = 0  # run so far (one per batch of callers)
        self._closed = False

    async def now(self) -> str:
        """A snapshot taken after this call."""
        if self._closed:  # a connection opened now would outlive its owner
            raise RuntimeError("the snapshot clock is closed")
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._run())
        return await fut

    async def _run(self) -> None:
        batch: list[asyncio.Future[str]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []  # who comes from now on waits for the next statement
                try:
                    snapshot = await self._take()
                except Exception as e:
                    for fut in batch:
                        settle(fut, e)
                    continue
                for fut in batch:
                    if not fut.done():
                        fut.set_result(snapshot)
        except BaseException as e:  # cancelled: the clock is closing
            for fut in batch + self._waiting:
                settle(fut, e)
            self._waiting = []
            raise
        finally:
            self._runner = None

    async def _take(self) -> str:
        if self._conn is not None:
            try:
                return await self._statement(self._conn)
            except Exception:
                self._drop()  # gone since its last statement, maybe: once more, on a new connection
        self._conn = await self._connect()
        try:
            return await self._statement(self._conn)
        except Exception:
            self._drop()
            raise

    async def _statement(self, conn: SnapshotConnection) -> str:
        self.statements += 1
        return str(await conn.fetchval(SNAPSHOT))

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        """Cancels whoever waits and closes the connection; ``now()`` fails from then on."""
        self._closed = True
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.wait([runner])  # its end, without taking its cancellation for this caller's
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # already broken: let it go
                conn.terminate()
