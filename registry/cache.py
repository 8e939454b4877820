"""A small time-bounded read cache for the hot read paths (pointer resolve, pack detail).

Writes made through this process invalidate their keys at once; writes made by another daemon replica
sharing the database show up within ``ttl_s``. A compare-and-swap never trusts the cache: it checks the
database, so a stale read costs at most one 412 and a retry. ``ttl_s = 0`` turns caching off.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    ttl_s: float = 1.0
    max_entries: int = 10_000

    def __post_init__(self) -> None:
        if self.ttl_s < 0 or self.max_entries < 1:
            raise ValueError(f"cache ttl_s must be >= 0 and max_entries >= 1: {self}")


class TtlCache(Generic[K, V]):
    """Entries expire ``ttl_s`` after they were stored; the oldest go first when full."""

    def __init__(
        self, config: CacheConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or CacheConfig()
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            self._items.pop(key, None)
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        if self.config.ttl_s <= 0:
            return
        self._items[key] = (self._clock() + self.config.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.config.max_entries:
            self._items.popitem(last=False)

    def invalidate(self, key: K) -> None:
        self._items.pop(key, None)

    def invalidate_where(self, pred: Callable[[K], bool]) -> None:
        for key in [k for k in self._items if pred(k)]:
            del self._items[key]


class Memo(Generic[K, V]):
    """What never changes under its key (content named by its CID), kept until the least recently used entries
    must go: at most ``max_entries``, and at most ``max_weight`` in all by ``weigh`` (bytes, say)."""

    def __init__(self, max_entries: int, max_weight: int, weigh: Callable[[V], int]) -> None:
        if max_entries < 1 or max_weight < 1:
            raise ValueError("a memo holds at least one entry and one unit of weight")
        self.max_entries, self.max_weight = max_entries, max_weight
        self._weigh = weigh
        self._items: OrderedDict[K, tuple[int, V]] = OrderedDict()
        self.weight = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: K, value: V) -> None:
        w = self._weigh(value)
        if w > self.max_weight:
            return  # bigger than the whole memo: served from the database each time
        old = self._items.pop(key, None)
        if old is not None:
            self.weight -= old[0]
        self._items[key] = (w, value)
        self.weight += w
        while len(self._items) > self.max_entries or self.weight > self.max_weight:
            _, (gone, _v) = self._items.popitem(last=False)
            self.weight -= gone


class Rendered(Generic[K]):
    """Bytes rendered from a value, kept while the same value comes back for its key: on SQLite the fast reads'
    memo (``registry.db.fastread``) returns the very object it kept while the database is unchanged; on Postgres
    each read makes a new one, equal to the kept one (same type, ``==``) while nothing it shows changed. The
    values kept here are frozen views built the same way from the same reads, so equal values render alike.
    The entry holds the value, so its identity is never reused."""

    def __init__(self, max_entries: int = 1024, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._memo: Memo[K, tuple[object, bytes]] = Memo(max_entries, max_bytes, lambda v: len(v[1]))

    def get(self, key: K, source: object, render: Callable[[], bytes]) -> bytes:
        hit = self._memo.get(key)
        if hit is not None:
            if hit[0] is source:
                return hit[1]
            if type(hit[0]) is type(source) and hit[0] == source:
                # A new read of unchanged data: keep the new object, which the reads' memo now returns, so the
                # next requests match it by identity instead of comparing every field again.
                self._memo.put(key, (source, hit[1]))
                return hit[1]
        body = render()
        self._memo.put(key, (source, body))
        return body
