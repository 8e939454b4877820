"""Postgres's remembered reads (registry.db.remember): a coalesced or batched read returns its remembered result
only under the very snapshot it was read after; any commit makes the next read run its statement again, and a
batch reads only the keys not remembered under its snapshot."""

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


def _memo() -> Memo[Any, tuple[object, Any]]:
    return Memo(16, 16, lambda _: 1)


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def read(self) -> tuple[str, int]:
        self.calls += 1
        return ("rows", self.calls)


class Many:
    def __init__(self, leave_out: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.leave_out = leave_out

    async def read(self, keys: list[str]) -> Mapping[str, Any]:
        self.batches.append(list(keys))
        return {k: (k, len(self.batches)) for k in keys if k not in self.leave_out}


async def test_one_returns_what_was_remembered_under_the_same_snapshot_only() -> None:
    memo, c = _memo(), Counter()
    first = await remember.one(memo, "10:10:", "k", c.read)
    assert await remember.one(memo, "10:10:", "k", c.read) is first and c.calls == 1
    assert await remember.one(memo, "10:11:10", "k", c.read) == ("rows", 2)  # another snapshot: read
    assert await remember.one(memo, "10:10:", "k", c.read) == ("rows", 3)  # kept under the newest only


async def test_a_failed_read_is_not_remembered() -> None:
    memo = _memo()

    async def fail() -> str:
        raise LookupError("gone")

    with pytest.raises(LookupError):
        await remember.one(memo, "1:1:", "k", fail)
    assert len(memo) == 0


async def test_many_reads_only_the_keys_not_remembered_under_its_snapshot() -> None:
    memo, src = _memo(), Many()
    assert await remember.many(memo, "5:5:", "kind", ["a"], src.read) == {"a": ("a", 1)}
    got = await remember.many(memo, "5:5:", "kind", ["a", "b"], src.read)
    assert got == {"a": ("a", 1), "b": ("b", 2)} and src.batches == [["a"], ["b"]]
    assert await remember.many(memo, "5:5:", "kind", ["b", "a"], src.read) == got and len(src.batches) == 2
    assert await remember.many(memo, "5:5:", "other", ["a"], src.read) == {"a": ("a", 3)}  # per kind
    assert await remember.many(memo, "6:6:", "kind", ["a", "b"], src.read) == {"a": ("a", 4), "b": ("b", 4)}


async def test_a_key_left_out_of_a_batch_is_neither_returned_nor_remembered() -> None:
    memo, src = _memo(), Many(leave_out=frozenset({"b"}))
    assert await remember.many(memo, "5:5:", "kind", ["a", "b"], src.read) == {"a": ("a", 1)}
    assert await remember.many(memo, "5:5:", "kind", ["b"], src.read) == {} and src.batches[-1] == ["b"]


async def test_the_snapshot_is_asked_for_only_when_a_key_may_still_hold() -> None:
    memo, asked = _memo(), []

    async def ask() -> str:
        asked.append(1)
        return "9:9:"

    assert await remember.tag(memo, None, ["a"], ask) == "9:9:" and len(asked) == 1  # none seen yet
    assert await remember.tag(memo, "8:8:", ["a", "b"], ask) == "8:8:" and len(asked) == 1  # nothing to check
    memo.put("b", ("7:7:", "old"))
    assert await remember.tag(memo, "8:8:", ["a", "b"], ask) == "8:8:" and len(asked) == 1  # b's tag is older
    memo.put("b", ("8:8:", "kept"))
    assert await remember.tag(memo, "8:8:", ["a", "b"], ask) == "9:9:" and len(asked) == 2  # b may hold: ask
    assert (
        await remember.tag(memo, "8:8:", ["a", "b", "c"], ask) == "8:8:" and len(asked) == 2
    )  # 1 of 3: read all


@pytest.fixture
async def reads(engine: AsyncEngine) -> AsyncIterator[FastReads]:
    r = FastReads(engine, pool_size=1)
    yield r
    await r.close()


async def _quiet(reads: FastReads, body: Callable[[], Awaitable[Any]]) -> Any:
    """``body()``'s result from a try during which the cluster's snapshot did not move (nothing committed
    anywhere), so the memo must have held; a test fails only if every try saw a commit."""
    for _ in range(ATTEMPTS):
        before = await reads._pg_snapshot()
        result = await body()
        if await reads._pg_snapshot() == before:
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
    asks = 0
    ask = reads._pg_snapshot

    async def counted() -> str:
        nonlocal asks
        asks += 1
        return await ask()

    reads._pg_snapshot = counted  # type: ignore[method-assign]
    c = Counter()
    await reads.coalesced("first", c.read)  # no snapshot seen yet: asked
    assert asks == 1
    await reads.coalesced(
        "new", c.read
    )  # nothing remembered to check: read at once, tagged with the last seen
    assert asks == 1 and c.calls == 2
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE probe (x INTEGER)"))
    assert await reads.coalesced("new", c.read) == ("rows", 3)  # remembered under the last seen: asked, moved
    assert asks == 2


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
