"""Remembered reads on Postgres (registry.db.fastread.FastReads.coalesced and .batched).

Coalesced reads on Postgres are remembered under the snapshot they were read after: each read (or batch)
first asks ``SELECT pg_current_snapshot()`` (a few bytes, no table), and a key remembered under that very
snapshot is returned without its statement; the others are read, and remembered under it. Two equal snapshots
(xmin, xmax, in-progress ids) see exactly the same committed transactions, and every transaction that ends
changes the snapshot for good (its id leaves the in-progress list, or xmax moves past it), so an entry is
returned only while nothing has committed since it was read: never stale, like SQLite's. A result read after
a newer commit than its tag only misses later. Any commit in the cluster (another database's too) makes the next
read of every key run its statement again, one more round trip than reading alone: a busy writer costs that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, TypeVar

from registry.cache import Memo

T = TypeVar("T")
SNAPSHOT = "SELECT pg_current_snapshot()::text"  # the snapshot a statement runs under, as text


async def one(
    memo: Memo[Hashable, tuple[object, Any]], now: str, key: Hashable, read: Callable[[], Awaitable[T]]
) -> T:
    """``read()``'s result, or the one remembered under the snapshot ``now`` taken just before."""
    hit = memo.get(key)
    if hit is not None and hit[0] == now:
        remembered: T = hit[1]
        return remembered
    result = await read()
    memo.put(key, (now, result))
    return result


async def many(
    memo: Memo[Hashable, tuple[object, Any]],
    now: str,
    kind: Hashable,
    keys: list[Any],
    read: Callable[[list[Any]], Awaitable[Mapping[Any, T]]],
) -> dict[Any, T]:
    """:func:`one` for a batch of ``kind`` (remembered under ``(kind, key)``): one ``read`` of the keys not
    remembered under ``now``."""
    out: dict[Any, T] = {}
    missing = []
    for key in keys:
        hit = memo.get((kind, key))
        if hit is not None and hit[0] == now:
            out[key] = hit[1]
        else:
            missing.append(key)
    if missing:
        found = await read(missing)
        for key in missing:
            if key in found:  # one left out fails its callers (registry.db.coalesce)
                out[key] = found[key]
                memo.put((kind, key), (now, found[key]))
    return out
