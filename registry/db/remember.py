"""Remembered reads on Postgres (registry.db.fastread.FastReads.coalesced and .batched).

A read's result is remembered under a Postgres snapshot (``pg_current_snapshot()``: xmin, xmax, in-progress ids)
taken before the read started. Two equal snapshots see exactly the same committed transactions, and every
transaction that ends changes the snapshot for good (its id leaves the in-progress list, or xmax moves past it),
so a result is as fresh as a new read while the current snapshot still equals its tag: nothing has committed
since, so nothing between the tag and the read either. Any commit in the cluster (another database's too) makes
the next read of every key run its statement again.

A request whose key is remembered under the newest snapshot seen asks for a snapshot taken after it arrived
(one small statement, shared by every request that waits for one, of every kind: registry.db.coalesce) and,
if that is still the tag, returns the remembered result. Otherwise, or when its key is not remembered under the
newest snapshot seen, it reads (coalesced or batched, as before), and the result is remembered under that newest
snapshot, which was taken before the read. Keys read once (a fleet spread over many pointers) cost what they
did; keys read again cost one shared small statement while nothing commits, and it again just after a commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from registry.cache import Memo

T = TypeVar("T")
SNAPSHOT = "SELECT pg_current_snapshot()::text"  # the snapshot a statement runs under, as text


class SnapshotMemo:
    """Results remembered under the snapshot taken before their read; ``fresh()`` gives a snapshot taken after
    its call (the caller coalesces it)."""

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
