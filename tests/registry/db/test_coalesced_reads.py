"""Coalesced reads (registry.db.fastread.FastReads.coalesced): identical reads queued together share one, a read
that has started is never joined (so a caller never gets a state older than its own request), one read of a key
and at most ``pool_size`` in all run at once, and a caller that goes away or a read that fails harms no one
else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from model_core.format.pack import load_manifest
from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from registry.accounts.auth import AuthService
from registry.db.fastread import FastReads
from registry.db.models import Pointer
from registry.names import ModelRef
from registry.packs.blobs import BlobService
from registry.packs.pointers import PointerService
from registry.packs.publish import PublishService
from tests.registry.api import helpers

DEADLINE_S = 30.0


async def until(cond: Callable[[], bool], what: str) -> None:
    """Waits, yielding to the loop, until ``cond()`` holds (a deadline, not a sleep, bounds it)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_S
    while not cond():
        assert loop.time() < end, f"timed out waiting until {what}"
        await asyncio.sleep(0.001)


async def until_committed(sessions: async_sessionmaker[AsyncSession], cid: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_S
    while True:
        async with sessions() as s:
            if await s.scalar(select(Pointer.pack_cid).where(Pointer.tag == "latest")) == cid:
                return
        assert loop.time() < end, "timed out waiting for the move to commit"
        await asyncio.sleep(0.01)


@pytest.fixture
async def one_slot(engine: AsyncEngine) -> AsyncIterator[FastReads]:
    """Reads with one connection: the second read at once queues (none remembered: registry.db.remember has its
    own tests)."""
    reads = FastReads(engine, pool_size=1, remember=False)
    yield reads
    await reads.close()


class Gate:
    """A read that holds its slot until opened."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.running = 0

    async def read(self) -> str:
        self.running += 1
        await self.opened.wait()
        return "held"


class Counter:
    def __init__(self, value: Any = "v") -> None:
        self.calls = 0
        self.value = value

    async def read(self) -> Any:
        self.calls += 1
        if isinstance(self.value, Exception):
            raise self.value
        return (self.value, self.calls)


def start(reads: FastReads, key: str, read: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
    return asyncio.ensure_future(reads.coalesced(key, read))


pg_only = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pg_only
async def test_queued_identical_reads_share_one_and_others_run_their_own(one_slot: FastReads) -> None:
    gate, same, other = Gate(), Counter("same"), Counter("other")
    holder = start(one_slot, "hold", gate.read)
    await until(lambda: gate.running == 1, "the first read holds the only slot")
    joined = [start(one_slot, "k", same.read) for _ in range(5)]
    apart = start(one_slot, "j", other.read)
    await until(lambda: len(one_slot.coalescer.queued()) == 2, "the two keys are queued")
    gate.opened.set()
    assert await holder == "held"
    assert await asyncio.gather(*joined) == [("same", 1)] * 5  # five callers, one read
    assert await apart == ("other", 1)
    assert (same.calls, other.calls) == (1, 1)
    assert not one_slot.coalescer.queued()


@pg_only
async def test_a_read_that_started_is_not_joined(one_slot: FastReads) -> None:
    running = Gate()
    first = start(one_slot, "k", running.read)  # a free slot: it starts at once
    await until(lambda: running.running == 1, "the first read is running")
    queued, later = Gate(), Counter("fresh")
    second = start(one_slot, "k", queued.read)  # same key, but the first has started: it queues its own
    await until(lambda: "k" in one_slot.coalescer.queued(), "the second read is queued")
    running.opened.set()
    assert await first == "held"
    await until(lambda: queued.running == 1, "the queued read has started")
    third = start(one_slot, "k", later.read)  # the queued one has started now: not joined either
    await until(lambda: "k" in one_slot.coalescer.queued(), "the third read is queued")
    queued.opened.set()
    assert await second == "held"
    assert await third == ("fresh", 1)


@pg_only
async def test_a_caller_that_goes_away_does_not_cancel_the_read_for_the_others(one_slot: FastReads) -> None:
    gate, same = Gate(), Counter()
    holder = start(one_slot, "hold", gate.read)
    await until(lambda: gate.running == 1, "the slot is held")
    leaving = start(one_slot, "k", same.read)  # its call queued the read
    staying = start(one_slot, "k", same.read)
    await until(lambda: "k" in one_slot.coalescer.queued(), "the read is queued")
    leaving.cancel()
    gate.opened.set()
    await holder
    assert await staying == ("v", 1)
    with pytest.raises(asyncio.CancelledError):
        await leaving


@pg_only
async def test_when_the_caller_that_queued_a_read_leaves_mid_read_the_read_goes_on_for_the_others(
    one_slot: FastReads,
) -> None:
    gate, queued = Gate(), Gate()
    holder = start(one_slot, "hold", gate.read)
    await until(lambda: gate.running == 1, "the slot is held")
    leaving = start(one_slot, "k", queued.read)  # queues the read
    staying = start(one_slot, "k", queued.read)
    await until(lambda: "k" in one_slot.coalescer.queued(), "the read is queued")
    gate.opened.set()
    await holder
    await until(lambda: queued.running == 1, "the queued read has started")
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    queued.opened.set()
    assert await staying == "held"
    assert queued.running == 1  # one read, not cut short and begun again


@pg_only
async def test_one_read_of_a_key_runs_at_a_time_even_with_slots_free(engine: AsyncEngine) -> None:
    reads = FastReads(engine, pool_size=3, remember=False)
    try:
        first, same, other = Gate(), Counter("same"), Counter("other")
        running = start(reads, "k", first.read)
        await until(lambda: first.running == 1, "the first read of k runs")
        # Two slots are free, but a read of k runs: these queue as one read, behind it
        joined = [start(reads, "k", same.read) for _ in range(4)]
        await until(lambda: "k" in reads.coalescer.queued(), "the second read of k is queued")
        assert await start(reads, "j", other.read) == ("other", 1)  # another key runs at once
        assert same.calls == 0
        first.opened.set()
        assert await running == "held"
        assert await asyncio.gather(*joined) == [("same", 1)] * 4  # four callers, one read, after the first
        assert not reads.coalescer.busy()
        assert await reads.coalesced("k", same.read) == ("same", 2)  # nothing runs: at once, its own
    finally:
        await reads.close()


@pg_only
async def test_close_cancels_the_queued_reads_and_their_callers(one_slot: FastReads) -> None:
    gate, never = Gate(), Counter()
    holder = start(one_slot, "hold", gate.read)
    await until(lambda: gate.running == 1, "the slot is held")
    waiting = [start(one_slot, "k", never.read) for _ in range(2)]
    await until(lambda: "k" in one_slot.coalescer.queued(), "the read is queued")
    await one_slot.close()
    for w in waiting:
        with pytest.raises(asyncio.CancelledError):
            await w
    assert never.calls == 0
    gate.opened.set()
    assert await holder == "held"


@pg_only
async def test_a_failed_read_fails_every_caller_and_the_next_read_runs_anew(
    one_slot: FastReads, caplog: pytest.LogCaptureFixture
) -> None:
    gate, failing = Gate(), Counter(RuntimeError("the database went away"))
    holder = start(one_slot, "hold", gate.read)
    await until(lambda: gate.running == 1, "the slot is held")
    callers = [start(one_slot, "k", failing.read) for _ in range(3)]
    gone = start(one_slot, "g", failing.read)  # its only caller leaves: the error is retrieved all the same
    await until(lambda: len(one_slot.coalescer.queued()) == 2, "both reads are queued")
    gone.cancel()
    gate.opened.set()
    await holder
    for c in callers:
        with pytest.raises(RuntimeError, match="went away"):
            await c
    await until(lambda: not one_slot.coalescer.busy(), "both queued reads are done")
    assert failing.calls == 2  # one per key
    ok = Counter("ok")
    assert await one_slot.coalesced("k", ok.read) == ("ok", 1)
    assert "never retrieved" not in caplog.text


async def test_at_most_pool_size_reads_run_at_once(engine: AsyncEngine) -> None:
    reads = FastReads(engine, pool_size=3, remember=False)
    try:
        now = peak = 0
        release = asyncio.Event()

        async def read(i: int) -> int:
            nonlocal now, peak
            now += 1
            peak = max(peak, now)
            await release.wait()
            now -= 1
            return i

        tasks = [start(reads, f"k{i}", lambda i=i: read(i)) for i in range(8)]
        sqlite = engine.dialect.name == "sqlite"
        await until(lambda: now == (8 if sqlite else 3), "the reads that may run are running")
        release.set()
        assert await asyncio.gather(*tasks) == list(range(8))
        # SQLite reads run on the loop and never wait: nothing bounds them there (nor needs to)
        assert peak == (8 if sqlite else 3)
    finally:
        await reads.close()


@pytest.mark.parametrize("remember", [False, True], ids=["coalesced", "coalesced-and-remembered"])
async def test_a_resolve_made_after_a_move_sees_it_even_when_it_joins_a_queued_one(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, tmp_path: Path, remember: bool
) -> None:
    """On Postgres the resolve queued before the move and the one made after it share one read, which starts
    after the move: both see it. On SQLite each runs at once: the first sees the old CID, the second the new.
    Remembered (registry.db.remember), a resolve is remembered before the move: the first, checked against a snapshot
    taken after it came and before the move, is answered with the old CID at once (or, if anything in the cluster
    committed meanwhile, queued and sees the move); the one made after the move sees it."""
    one_slot = FastReads(engine, pool_size=1, remember=remember)
    try:
        await _resolve_around_a_move(sessions, one_slot, tmp_path, remember)
    finally:
        await one_slot.close()


async def _resolve_around_a_move(
    sessions: async_sessionmaker[AsyncSession], one_slot: FastReads, tmp_path: Path, remember: bool
) -> None:
    auth = AuthService(sessions)
    alice = await auth.authenticate((await auth.create_token("alice", namespaces=["acme"])).token)
    data = helpers.shard_bytes(4000, 2)

    async def one() -> AsyncIterator[bytes]:
        yield data

    await BlobService(sessions, FsBlockstore(tmp_path, FsBlockstoreConfig(fsync=False))).ingest(
        alice, helpers.cid_of(data), one()
    )
    pointers = PointerService(sessions, one_slot)
    publish = PublishService(sessions, None)
    ref = ModelRef("acme", "tiny")
    old, new = [
        await publish.publish(
            alice, ref, load_manifest(helpers.manifest([("a.safetensors", data)], version=v))
        )
        for v in ("1", "2")
    ]
    async with sessions.begin() as s:  # "latest" back to the old pack
        await s.execute(update(Pointer).where(Pointer.tag == "latest").values(pack_cid=old.cid))
    if remember:  # read and remembered before the move
        assert (await pointers.resolve(ref, "latest")).cid == old.cid
    gate = Gate()
    holder = start(one_slot, "hold", gate.read)
    await until(lambda: gate.running == 1, "the slot is held")
    before = asyncio.ensure_future(pointers.resolve(ref, "latest"))
    # Answered at once (SQLite; or remembered on Postgres, under a snapshot taken after it came, before the
    # move: its own connection, no slot) or queued behind the held slot.
    await until(
        lambda: before.done() or bool(one_slot.coalescer.queued()), "the first resolve is answered or queued"
    )
    answered = before.done()
    if one_slot.dialect.name == "sqlite" or not remember:
        assert answered == (one_slot.dialect.name == "sqlite")
    # The move commits, then reads the pointer back (so on Postgres it too waits for the slot).
    moved = asyncio.ensure_future(pointers.set(alice, ref, "latest", new.cid))
    await until_committed(sessions, new.cid)
    after = asyncio.ensure_future(pointers.resolve(ref, "latest"))
    gate.opened.set()
    await holder
    assert (await moved).cid == new.cid
    assert (await after).cid == new.cid
    assert (await before).cid == (old.cid if answered else new.cid)
