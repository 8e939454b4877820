"""SQLite's remembered reads (registry.db.fastread.FastReads.coalesced): a read's result is returned again only
while SQLite's ``PRAGMA data_version`` says no other connection committed since it was read: a commit by this
daemon's writer or by another process makes the next read run; a rollback, or nothing, does not. And the
rendered bodies built from those results (registry.cache.Rendered) follow them. The number is read once per pass
of the event loop: what arrives after that read, in a later pass, reads it again."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.cache import Rendered
from registry.db import fastread
from registry.db.fastread import FastReads

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class Counter:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls = 0
        self.fail = fail

    async def read(self) -> tuple[str, int]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return ("rows", self.calls)


@pytest.fixture
async def reads(engine: AsyncEngine) -> AsyncIterator[FastReads]:
    r = FastReads(engine)
    yield r
    await r.close()


def _db_path(engine: AsyncEngine) -> str:
    path = engine.url.database
    assert path
    return path


@sqlite_only
async def test_a_read_is_remembered_while_nothing_commits(reads: FastReads) -> None:
    c = Counter()
    first = await reads.coalesced("k", c.read)
    assert await reads.coalesced("k", c.read) is first and c.calls == 1
    assert await reads.coalesced("other", c.read) == ("rows", 2)  # another key reads for itself


@sqlite_only
async def test_a_commit_by_the_daemons_writer_makes_the_next_read_run(
    reads: FastReads, engine: AsyncEngine
) -> None:
    c = Counter()
    assert await reads.coalesced("k", c.read) == ("rows", 1)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE probe (x INTEGER)"))
    assert await reads.coalesced("k", c.read) == ("rows", 2)
    assert await reads.coalesced("k", c.read) == ("rows", 2)


@sqlite_only
async def test_a_commit_by_another_process_makes_the_next_read_run(
    reads: FastReads, engine: AsyncEngine
) -> None:
    c = Counter()
    assert await reads.coalesced("k", c.read) == ("rows", 1)
    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE probe (x)'); c.commit()"
    subprocess.run([sys.executable, "-c", code, _db_path(engine)], check=True, timeout=60)
    # This step blocked the loop while the other process committed. A request sent after that commit arrives
    # in a later pass of the loop, which reads the number again: one pass, as such a request would have.
    await asyncio.sleep(0)
    assert await reads.coalesced("k", c.read) == ("rows", 2)


@sqlite_only
async def test_the_number_is_read_once_per_pass_of_the_loop(reads: FastReads) -> None:
    first = reads.data_version()
    assert reads._watch is not None
    executed: list[str] = []
    reads._watch.set_trace_callback(executed.append)
    assert [reads.data_version() for _ in range(3)] == [first] * 3 and executed == []  # the same pass
    await asyncio.sleep(0)  # the next pass: read again
    assert reads.data_version() == first and executed == ["PRAGMA data_version"]
    assert reads.data_version() == first and executed == ["PRAGMA data_version"]


@sqlite_only
async def test_a_commit_handed_back_from_a_thread_after_the_read_makes_the_next_read_run(
    reads: FastReads, engine: AsyncEngine
) -> None:
    """The daemon's writers commit on threads and resume on the loop: queued after the number's read, so the
    code that resumes reads it again, and so does every request that arrives after the commit."""
    c = Counter()
    path = _db_path(engine)

    def commit() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("CREATE TABLE probe (x INTEGER)")
        finally:
            other.close()

    assert await reads.coalesced("k", c.read) == ("rows", 1)  # read and remembered in this pass
    await asyncio.to_thread(commit)
    assert await reads.coalesced("k", c.read) == ("rows", 2)


@sqlite_only
async def test_a_rollback_leaves_the_remembered_read(reads: FastReads, engine: AsyncEngine) -> None:
    c = Counter()
    await reads.coalesced("k", c.read)
    other = sqlite3.connect(_db_path(engine), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("CREATE TABLE probe (x INTEGER)")
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert await reads.coalesced("k", c.read) == ("rows", 1) and c.calls == 1


@sqlite_only
async def test_a_failed_read_is_not_remembered(reads: FastReads) -> None:
    c = Counter(fail=LookupError("no such row"))
    for _ in range(2):
        with pytest.raises(LookupError):
            await reads.coalesced("k", c.read)
    assert c.calls == 2


@sqlite_only
async def test_the_memo_is_bounded(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastread, "MEMO_ENTRIES", 2)
    reads = FastReads(engine)
    try:
        c = Counter()
        for key in ("a", "b", "c"):
            await reads.coalesced(key, c.read)
        assert len(reads._memo) == 2
        await reads.coalesced("a", c.read)  # the oldest went first: read again
        assert c.calls == 4
    finally:
        await reads.close()


def test_a_rendering_is_reused_for_the_same_or_an_equal_value_and_only_for_it() -> None:
    rendered: Rendered[str] = Rendered()
    calls: list[Any] = []

    def render(value: object) -> bytes:
        calls.append(value)
        return repr(value).encode()

    a = ("x",)
    assert rendered.get("k", a, lambda: render(a)) == b"('x',)"
    assert rendered.get("k", a, lambda: render(a)) == b"('x',)" and len(calls) == 1
    b = tuple(["x"])  # another read's result (a Postgres read makes a new object each time), equal: reused
    assert b is not a and rendered.get("k", b, lambda: render(b)) == b"('x',)" and len(calls) == 1
    c = ("y",)  # changed: rendered anew, and kept
    assert rendered.get("k", c, lambda: render(c)) == b"('y',)" and len(calls) == 2
    d = ["y"]  # of another type: rendered anew even were it equal
    assert rendered.get("k", d, lambda: render(d)) == b"['y']" and len(calls) == 3
    assert rendered.get("other", c, lambda: render(c)) == b"('y',)" and len(calls) == 4  # per key


def test_after_an_equal_value_the_rendering_matches_that_value_by_identity() -> None:
    """A new read of unchanged data is compared field by field once; the reads' memo then returns that new object
    again and again, and each of those requests matches it by identity."""

    class Value:
        compared = 0

        def __init__(self, x: str) -> None:
            self.x = x

        def __eq__(self, other: object) -> bool:
            Value.compared += 1
            return isinstance(other, Value) and other.x == self.x

        __hash__ = None  # type: ignore[assignment]

    rendered: Rendered[str] = Rendered()
    old, new = Value("x"), Value("x")
    rendered.get("k", old, lambda: b"x")
    assert rendered.get("k", new, lambda: b"rendered again") == b"x" and Value.compared == 1
    for _ in range(3):
        assert rendered.get("k", new, lambda: b"rendered again") == b"x"
    assert Value.compared == 1
