"""The event feed and live stream: pages of the outbox, and one poller per daemon that fans new events out to
Server-Sent Events subscribers.

The poller runs only while someone listens: it reads ``id > last`` every ``poll_interval_s`` (one query for
all subscribers) and puts each event on every subscriber's bounded queue. A subscriber that falls
``queue_size`` events behind is cut off (its stream ends; the client resumes with ``Last-Event-ID``), so a
slow reader never holds memory or the others back. Retention: ``prune`` deletes events older than
``retention_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.events import Event
from registry.events import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventsConfig:
    retention_s: float = 30 * 86_400.0
    poll_interval_s: float = 0.5  # for events other daemons commit; this one's wake the poller at once
    max_subscribers: int = 256
    queue_size: int = 1000
    heartbeat_s: float = 15.0
    page_max: int = 500


class TooManySubscribers(Exception):
    pass


@dataclass(frozen=True)
class Viewer:
    """Who reads: pin events are shown only to their publisher's tokens (or a global admin)."""

    publisher: str | None = None
    global_admin: bool = False

    def may_see(self, e: Event) -> bool:
        if e.type != "pin.status":
            return True
        return self.global_admin or (self.publisher is not None and e.actor == self.publisher)


class _Subscriber:
    """A bounded queue of events and one reserved slot for the end marker: on overflow nothing is dropped
    from what was queued, so the events a stream delivers are always a prefix and Last-Event-ID resumes
    exactly where it stopped."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(size + 1)
        self.overflowed = False

    def offer(self, e: Event) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.size:
            self.overflowed = True
            self.queue.put_nowait(None)  # the reserved slot
            return
        self.queue.put_nowait(e)


class EventStream:
    """An open subscription: iterate it; ``aclose()`` releases it (also when it was never iterated)."""

    def __init__(
        self, subs: set[_Subscriber], sub: _Subscriber, gen: AsyncGenerator[Event | None, None]
    ) -> None:
        self._subs, self._sub, self._gen = subs, sub, gen

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event | None:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        self._subs.discard(self._sub)
        await self._gen.aclose()


class EventService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], config: EventsConfig = EventsConfig()
    ) -> None:
        self._sessions = sessions
        self.config = config
        self._subs: set[_Subscriber] = set()
        self._poller: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # set once the running poller has read where it starts
        self._last = 0

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def page(
        self,
        viewer: Viewer,
        *,
        after: int = 0,
        types: Sequence[str] = (),
        namespace: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Event], int]:
        """Up to ``limit`` events after ``after`` the viewer may see, and the id to continue after (the last
        id read, so a page of events the viewer may not see still advances)."""
        async with readonly_session(self._sessions) as s:
            rows = await store.page(s, after=after, types=types, namespace=namespace, limit=limit)
        cursor = rows[-1].id if rows else after
        return [e for e in rows if viewer.may_see(e)], cursor

    async def last_id(self) -> int:
        async with readonly_session(self._sessions) as s:
            return await store.last_id(s)

    def stream(
        self, viewer: Viewer, *, after: int | None, types: Sequence[str] = (), namespace: str | None = None
    ) -> EventStream:
        """Events after ``after`` (None: only new ones), then live ones as they commit. Yields None as a
        heartbeat when nothing happened for ``heartbeat_s``. Ends when the subscriber falls too far behind.
        The subscription is taken at once; ``aclose()`` the stream to release it.

        Raises:
            TooManySubscribers: ``max_subscribers`` streams are open in this daemon.
        """
        if len(self._subs) >= self.config.max_subscribers:
            raise TooManySubscribers(f"{len(self._subs)} event streams are open, the limit of this daemon")
        sub = _Subscriber(self.config.queue_size)
        self._subs.add(sub)  # before the replay: nothing committed meanwhile is missed (dupes are skipped)
        ready = self._ensure_poller()
        return EventStream(self._subs, sub, self._follow(sub, ready, viewer, after, types, namespace))

    async def _follow(
        self,
        sub: _Subscriber,
        ready: asyncio.Event,
        viewer: Viewer,
        after: int | None,
        types: Sequence[str],
        namespace: str | None,
    ) -> AsyncGenerator[Event | None, None]:
        try:
            # The replay ends on an empty page read after the poller has read where it starts: an event
            # committed before that start is in the replay, one after it reaches this queue.
            await ready.wait()
            if after is None:
                async with readonly_session(self._sessions) as s:
                    after = await store.last_id(s)
            while True:  # replay from the database, page by page
                rows, after_next = await self.page(
                    viewer, after=after, types=types, namespace=namespace, limit=self.config.page_max
                )
                for e in rows:
                    yield e
                if after_next == after:
                    break
                after = after_next
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), self.config.heartbeat_s)
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    return  # overflowed: the client resumes with Last-Event-ID
                if item.id <= after or not viewer.may_see(item):
                    continue
                if types and item.type not in types:
                    continue
                if namespace is not None and (item.namespace or "").lower() != namespace.lower():
                    continue
                after = item.id
                yield item
        finally:
            self._subs.discard(sub)

    def _ensure_poller(self) -> asyncio.Event:
        """The running poller's readiness (set once it has read its starting id); starts one if none runs."""
        if self._poller is None or self._poller.done():
            self._ready = asyncio.Event()
            self._poller = asyncio.get_running_loop().create_task(
                self._poll(self._ready), name="events-poller"
            )
        return self._ready

    async def _poll(self, ready: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:  # called from a commit in this process (the loop's own thread)
            loop.call_soon_threadsafe(woken.set)

        store.add_waker(wake)
        try:
            while not ready.is_set() and self._subs:
                try:
                    async with readonly_session(self._sessions) as s:
                        self._last = await store.last_id(s)
                    ready.set()
                except Exception:  # the database is away for a moment: the streams wait for it
                    log.warning("event poller: reading the newest event id failed", exc_info=True)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), self.config.poll_interval_s)
            while self._subs:
                woken.clear()
                try:
                    async with readonly_session(self._sessions) as s:
                        rows = await store.page(s, after=self._last, limit=self.config.page_max)
                except Exception:  # the database is away for a moment: try again next tick
                    log.warning("event poller: reading the outbox failed", exc_info=True)
                    rows = []
                for e in rows:
                    for sub in list(self._subs):
                        sub.offer(e)
                    self._last = e.id
                if len(rows) < self.config.page_max:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), self.config.poll_interval_s)
        finally:
            store.remove_waker(wake)
            ready.set()  # stopped (shut down): a stream still waiting goes on to its end marker

    def end_streams(self) -> None:
        """Wake every open stream with its end marker (the daemon is shutting down)."""
        for sub in list(self._subs):
            sub.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)

    async def close(self) -> None:
        self.end_streams()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def handle_prune(self, job: object) -> None:
        """The ``events-prune`` job."""
        deleted = await self.prune()
        if deleted:
            log.info("deleted %d event(s) past retention", deleted)

    async def prune(self) -> int:
        """Delete events past retention; returns how many."""
        before = utcnow() - timedelta(seconds=self.config.retention_s)
        async with self._sessions() as s, s.begin():
            return await store.prune(s, before)


def to_json(e: Event) -> dict[str, Any]:
    return store.event_json(e)
