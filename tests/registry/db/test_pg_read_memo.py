"""Postgres's remembered reads (registry.db.remember): a coalesced or batched read returns its remembered result
only under the very snapshot it was read after; any commit makes the next read run its statement again, and a
batch reads only the keys not remembered under the newest snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.cache import Memo
from registry.db import remember
from registry.db.fastread import FastReads
from tests.registry.db.test_coalesced_reads import Gate, until

pg_only = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
ATTEMPTS = 200  # tries at a window without any commit in the cluster (other databases' commits move it too)


class Snapshots:
    """``fresh()`` for a SnapshotMemo: the current snapshot, counting the asks."""

    def __init__(self) -> None:
        self.now = "10:10:"
        self.asks = 0

    async def fresh(self) -> str:
        self.asks += 1
        return self.now


def _memo(snaps: Snapshots) -> remember.SnapshotMemo:
    return remember.SnapshotMemo(Memo(16, 16, lambda _: 1), snaps.fresh)


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def read(self) -> tuple[str, int]:
        self.calls += 1
        return ("rows", self.calls)


async def test_a_result_is_returned_again_only_under_its_snapshot() -> None:
    snaps, c = Snapshots(), Counter()
    memo = _memo(snaps)
    first = await memo.get("k", c.read)  # no snapshot seen yet: asked, then read
    assert (snaps.asks, c.calls) == (1, 1)
    assert await memo.get("k", c.read) is first and (snaps.asks, c.calls) == (2, 1)  # asked: unchanged
    snaps.now = "10:11:10"  # something committed
    assert await memo.get("k", c.read) == ("rows", 2) and (snaps.asks, c.calls) == (3, 2)
    assert await memo.get("k", c.read) == ("rows", 2) and (snaps.asks, c.calls) == (4, 2)  # under the new one


async def test_a_key_not_remembered_under_the_newest_snapshot_is_read_without_asking() -> None:
    snaps, c = Snapshots(), Counter()
    memo = _memo(snaps)
    await memo.get("a", c.read)
    assert await memo.get("b", c.read) == ("rows", 2) and snaps.asks == 1  # nothing to check: read at once
    snaps.now = "11:11:"
    await memo.get("a", c.read)  # asked: moved, read again under the new snapshot
    assert (snaps.asks, c.calls) == (2, 3)
    # b is tagged with the older snapshot, so it cannot hold: read at once, tagged with the newest
    assert await memo.get("b", c.read) == ("rows", 4) and snaps.asks == 2
    assert await memo.get("b", c.read) == ("rows", 4) and snaps.asks == 3


async def test_a_failed_read_is_not_remembered() -> None:
    memo = _memo(Snapshots())

    async def fail() -> str:
        raise LookupError("gone")

    with pytest.raises(LookupError):
        await memo.get("k", fail)
    c = Counter()
    assert await memo.get("k", c.read) == ("rows", 1)


class Many:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def read(self, keys: list[str]) -> Mapping[str, Any]:
        self.batches.append(list(keys))
        return {k: (k, len(self.batches)) for k in keys}


@pytest.fixture
async def reads(engine: AsyncEngine) -> AsyncIterator[FastReads]:
    r = FastReads(engine, pool_size=1)
    yield r
    await r.close()


async def _quiet(reads: FastReads, body: Callable[[], Awaitable[Any]]) -> Any:
    """``body()``'s result from a try during which the cluster's snapshot did not move (nothing committed
    anywhere), so the memo must have held; a test fails only if every try saw a commit."""
    for _ in range(ATTEMPTS):
        before = await reads.clock.now()
        result = await body()
        if await reads.clock.now() == before:
            return result
    pytest.fail(f"the cluster committed during each of {ATTEMPTS} tries")


@pg_only
async def test_a_read_is_remembered_while_nothing_commits(reads: FastReads) -> None:
    async def twice() -> tuple[Counter, Any, Any]:
        c = Counter()
        return c, await reads.coalesced(("k", id(c)), c.read), await reads.coalesced(("k", id(c)), c.read)

    c, first, second = await _quiet(reads, twice)
    assert second is first and c.calls == 1


@pg_only
async def test_a_commit_makes_the_next_read_run(reads: FastReads, engine: AsyncEngine) -> None:
    c = Counter()
    assert await reads.coalesced("k", c.read) == ("rows", 1)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE probe (x INTEGER)"))
    assert await reads.coalesced("k", c.read) == ("rows", 2)
    async with engine.begin() as conn:  # a row written and committed: the same
        await conn.execute(text("INSERT INTO probe VALUES (1)"))
    assert await reads.coalesced("k", c.read) == ("rows", 3)


@pg_only
async def test_a_key_read_for_the_first_time_is_read_at_once_and_its_result_holds(
    reads: FastReads, engine: AsyncEngine
) -> None:
    def asks() -> int:
        return reads.clock.statements

    c = Counter()
    await reads.coalesced("first", c.read)  # no snapshot seen yet: asked
    assert asks() == 1
    await reads.coalesced(
        "new", c.read
    )  # nothing remembered to check: read at once, tagged with the last seen
    assert asks() == 1 and c.calls == 2
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE probe (x INTEGER)"))
    assert await reads.coalesced("new", c.read) == ("rows", 3)  # remembered under the last seen: asked, moved
    assert asks() == 2


@pg_only
async def test_a_rolled_back_write_leaves_nothing_that_a_read_could_miss(
    reads: FastReads, engine: AsyncEngine
) -> None:
    """An aborted transaction moves the snapshot too: the next read runs again (harmless), never the other way."""
    c = Counter()
    await reads.coalesced("k", c.read)
    async with engine.connect() as conn:
        await conn.execute(text("CREATE TABLE probe (x INTEGER)"))
        await conn.rollback()
    assert await reads.coalesced("k", c.read) == ("rows", 2)


@pg_only
async def test_a_batch_reads_only_the_keys_not_remembered(reads: FastReads) -> None:
    async def round_() -> tuple[Many, list[Any]]:
        src, gate = Many(), Gate()

        async def one_a() -> Any:
            return (await src.read(["a"]))["a"]

        first = await reads.batched(("kind", id(src)), "a", one_a, src.read)  # alone: nothing else runs
        held = asyncio.ensure_future(reads.coalesced(("hold", id(src)), gate.read))
        await until(lambda: gate.running == 1, "the only slot is held")
        waiting = [
            asyncio.ensure_future(reads.batched(("kind", id(src)), k, one_a, src.read)) for k in ("a", "b")
        ]
        await until(lambda: ("kind", id(src)) in reads.coalescer.queued(), "a and b wait as one batch")
        gate.opened.set()
        await held
        return src, [first, *await asyncio.gather(*waiting)]

    src, got = await _quiet(reads, round_)
    assert got == [("a", 1), ("a", 1), ("b", 2)] and src.batches == [["a"], ["b"]]
