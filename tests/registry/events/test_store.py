"""The outbox itself: payloads bounded, unknown types refused, retention, the viewer rule for pin events,
and on Postgres ids that become visible in commit order (the advisory lock), so ``id > after`` never skips."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.events import Event
from registry.events import store
from registry.events.service import EventsConfig, EventService, TooManySubscribers, Viewer


async def _record(sessions: async_sessionmaker[AsyncSession], **kw: object) -> None:
    async with sessions() as s, s.begin():
        await store.record(s, "node.up", **kw)  # type: ignore[arg-type]


async def _all(sessions: async_sessionmaker[AsyncSession]) -> list[Event]:
    async with sessions() as s:
        return await store.page(s, limit=1000)


async def test_payloads_are_bounded(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _record(sessions, payload={"node": "x" * 5000, "deep": [[[[[[[["too deep"]]]]]]]]})
    await _record(sessions, payload={f"k{i}": "y" * 1000 for i in range(60)})
    small, big = await _all(sessions)
    assert len(small.payload["node"]) == store.STRING_MAX and small.payload["node"].endswith("...")
    assert "too deep" not in str(small.payload)
    assert big.payload == {"truncated": True, "bytes": big.payload["bytes"]} and big.payload["bytes"] > 8192


async def test_unknown_types_are_a_bug(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s, s.begin():
        with pytest.raises(ValueError, match=r"pack\.exploded"):
            await store.record(s, "pack.exploded")


async def test_prune_deletes_only_what_is_past_retention(sessions: async_sessionmaker[AsyncSession]) -> None:
    await _record(sessions, payload={"n": 1})
    await _record(sessions, payload={"n": 2})
    async with sessions() as s, s.begin():
        old = (await store.page(s, limit=1))[0]
        old.created_at = utcnow() - timedelta(days=31)
    assert await EventService(sessions, EventsConfig(retention_s=30 * 86_400)).prune() == 1
    assert [e.payload["n"] for e in await _all(sessions)] == [2]


def test_pin_events_are_shown_only_to_their_publisher() -> None:
    pin = Event(type="pin.status", actor="alice", payload={})
    other = Event(type="pack.curated", actor="alice", payload={})
    assert not Viewer().may_see(pin) and Viewer().may_see(other)
    assert Viewer(publisher="alice").may_see(pin) and not Viewer(publisher="bob").may_see(pin)
    assert Viewer(publisher="root", global_admin=True).may_see(pin)


async def test_streams_are_limited_and_a_slow_one_is_cut(sessions: async_sessionmaker[AsyncSession]) -> None:
    config = EventsConfig(max_subscribers=1, queue_size=10, poll_interval_s=0.05, heartbeat_s=0.05)
    svc = EventService(sessions, config)
    slow = svc.stream(Viewer(), after=0)  # subscribed at once
    try:
        assert svc.subscribers == 1
        with pytest.raises(TooManySubscribers):
            svc.stream(Viewer(), after=None)
        assert await asyncio.wait_for(anext(slow), 30) is None  # a heartbeat: the replay is over, it is live
        await _record(sessions, payload={"n": "first"})
        first = await asyncio.wait_for(_next_event(slow), 30)
        assert first.payload["n"] == "first"
        for i in range(25):  # more than its queue holds, and it reads none of them while they arrive
            await _record(sessions, payload={"n": i})
        await _wait(lambda: svc._last >= first.id + 25)
        got = [e async for e in slow if e is not None]  # its queue, then the end: it fell too far behind
        assert len(got) == 10 and [e.payload["n"] for e in got] == list(range(len(got)))
        await slow.aclose()
        assert svc.subscribers == 0
        unused = svc.stream(Viewer(), after=None)  # released even when never iterated
        assert svc.subscribers == 1
        await unused.aclose()
        assert svc.subscribers == 0
    finally:
        await svc.close()


async def test_an_event_committed_while_the_poller_starts_is_not_lost(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event that commits after a new stream's replay has read its last page but before the poller reads
    where it starts must still reach the stream (the replay waits for the poller's start)."""
    svc = EventService(sessions, EventsConfig(poll_interval_s=0.05, heartbeat_s=0.05))
    real_last_id, real_page = store.last_id, store.page
    replay_read = asyncio.Event()

    async def page(s: AsyncSession, **kw: Any) -> list[Event]:
        rows = await real_page(s, **kw)
        replay_read.set()
        return rows

    async def last_id(s: AsyncSession) -> int:  # the poller's first read: the event commits just before it
        monkeypatch.setattr(store, "last_id", real_last_id)
        with contextlib.suppress(TimeoutError):  # (the fixed service's replay reads nothing before this ends)
            await asyncio.wait_for(replay_read.wait(), 1.0)
        await _record(sessions, payload={"n": "racing"})
        return await real_last_id(s)

    monkeypatch.setattr(store, "page", page)
    monkeypatch.setattr(store, "last_id", last_id)
    stream = svc.stream(Viewer(), after=0)
    try:
        got = await asyncio.wait_for(_next_event(stream), 30)
        assert got.payload["n"] == "racing"
    finally:
        await stream.aclose()
        await svc.close()


async def _next_event(stream: Any) -> Event:
    async for e in stream:
        if e is not None:
            return e  # type: ignore[no-any-return]
    raise AssertionError("the stream ended")


async def _wait(cond: object, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_ids_become_visible_in_commit_order(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A writes event 1 and stays open; B's event must wait for A's commit (else B's 2 would be read first
    and a reader past 2 would never see 1)."""
    async with sessions() as a:
        await a.begin()
        await store.record(a, "node.up", payload={"who": "a"})

        async def b() -> None:
            await _record(sessions, payload={"who": "b"})

        tb = asyncio.ensure_future(b())
        async with sessions() as probe:

            async def b_waits() -> bool:
                q = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                return int((await probe.execute(text(q))).scalar_one()) == 1

            deadline = asyncio.get_running_loop().time() + 30
            while not await b_waits():
                assert not tb.done() and asyncio.get_running_loop().time() < deadline, "B did not wait for A"
                await asyncio.sleep(0.02)
        assert await _all(sessions) == []  # nothing visible while A is open and B waits
        await a.commit()
    await asyncio.wait_for(tb, 30)
    got = await _all(sessions)
    assert [e.payload["who"] for e in got] == ["a", "b"] and got[0].id < got[1].id
