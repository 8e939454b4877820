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
