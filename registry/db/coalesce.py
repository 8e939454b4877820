"""Reads that wait share one: at most one read of a kind runs at a time, and the reads of that kind that arrive
meanwhile are done together, as one read of all their keys, when it ends (registry.db.fastread uses it on Postgres).

A *kind* is a statement that can read many keys at once (``many(keys)``, e.g. pointers by ``unnest`` of arrays);
a read of one key alone runs ``one()``. The rule, for every kind:

- Nothing of the kind runs and a slot is free: ``one()`` runs at once, for this caller alone.
- Otherwise the key joins the kind's *pending* batch (a caller of a key already in it shares that key's result),
  and a task of the coalescer's own runs the batch once the kind's running read has ended and a slot is free.
- A batch is joined only before it starts, so every caller's result is read after the caller arrived: the same
  freshness as reading alone, one round trip for many callers and many keys.
- A caller that goes away (a client disconnects) cancels nothing: the batch is the task's, not the caller's.
- At most ``width`` reads (of every kind) run at once.

A kind that reads one key only (:meth:`Coalescer.read`) is the same rule with one key: identical reads share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
Many = Callable[[list[Any]], Awaitable[Mapping[Any, Any]]]


def settle(fut: asyncio.Future[Any], e: BaseException) -> None:
    """A read ended with ``e``: its callers get the error; cancelled (the daemon stops) or the process exiting,
    they are cancelled."""
    if fut.done():
        return
    if not isinstance(e, Exception):
        fut.cancel()
        return
    fut.set_exception(e)
    fut.exception()  # retrieved here: callers that went away leave no "never retrieved" warning


class _Kind:
    __slots__ = ("pending", "running", "waiting")

    def __init__(self, running: bool) -> None:
        self.running = running  # a read of this kind is running
        self.pending: dict[Any, asyncio.Future[Any]] | None = None  # the next batch: key -> its result
        self.waiting: list[asyncio.Future[None]] = []  # the pending batch's task, until the running read ends


class Coalescer:
    def __init__(self, width: int) -> None:
        self._slots = asyncio.Semaphore(width)
        self._kinds: dict[Hashable, _Kind] = {}  # only kinds with a read running or a batch pending
        self._leaders: set[asyncio.Task[None]] = set()

    def queued(self) -> set[Hashable]:
        """The kinds with a batch waiting to start."""
        return {kind for kind, k in self._kinds.items() if k.pending is not None}

    def busy(self) -> bool:
        """Any read running or waiting (or a task that ran one still finishing)."""
        return bool(self._kinds or self._leaders)

    async def read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """``await read()``, shared with the identical reads (equal ``key``) that wait with it."""

        async def many(_keys: list[Any]) -> dict[Hashable, T]:
            return {key: await read()}

        result: T = await self.run(key, key, read, many)
        return result

    async def run(self, kind: Hashable, key: Hashable, one: Callable[[], Awaitable[Any]], many: Many) -> Any:
        """``key``'s value: ``await one()`` at once, or its entry in a batch's ``many(keys)`` (see the module's
        doc). ``many`` maps every key it was given, and ``one``/``many`` depend on their keys alone."""
        k = self._kinds.get(kind)
        if k is None:
            if not self._slots.locked():  # a free slot is taken without suspending: nothing waits
                k = self._kinds[kind] = _Kind(running=True)
                async with self._slots:
                    try:
                        return await one()
                    finally:
                        self._ended(kind, k)
            k = self._kinds[kind] = _Kind(running=False)
        batch = k.pending
        if batch is None:
            batch = k.pending = {}
            task = asyncio.ensure_future(self._lead(kind, k, batch, many))
            self._leaders.add(task)
            task.add_done_callback(self._leaders.discard)
        fut = batch.get(key)
        if fut is None:
            fut = batch[key] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(fut)  # shielded: a caller that goes away cancels nothing

    def _ended(self, kind: Hashable, k: _Kind) -> None:
        """``kind``'s running read ended: its pending batch (if any) may start."""
        k.running = False
        for w in k.waiting:
            if not w.done():
                w.set_result(None)
        k.waiting.clear()
        if k.pending is None and self._kinds.get(kind) is k:
            del self._kinds[kind]

    async def _lead(
        self, kind: Hashable, k: _Kind, batch: dict[Any, asyncio.Future[Any]], many: Many
    ) -> None:
        try:
            while k.running:  # one pending batch per kind: only this task waits here
                ahead = asyncio.get_running_loop().create_future()
                k.waiting.append(ahead)
                await ahead
            async with self._slots:
                k.pending, k.running = None, True  # it starts: whoever comes from now on is in the next batch
                try:
                    found = await many(list(batch))
                finally:
                    self._ended(kind, k)
            results = [(fut, found[key]) for key, fut in batch.items()]  # a key left out fails them all
        except BaseException as e:
            if k.pending is batch:  # it never started
                k.pending = None
                if not k.running and self._kinds.get(kind) is k:
                    del self._kinds[kind]
            for fut in batch.values():
                settle(fut, e)
            if not isinstance(e, Exception):
                raise
        else:
            for fut, value in results:
                fut.set_result(value)

    def close(self) -> Collection[asyncio.Task[None]]:
        """Cancels the batches' tasks (their callers are cancelled); returns them."""
        leaders = list(self._leaders)
        for leader in leaders:
            leader.cancel()
        return leaders
