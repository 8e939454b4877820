"""Remembered reads on Postgres (registry.db.fastread.FastReads.coalesced and .batched).

Coalesced reads on Postgres are remembered under a snapshot taken before them. A read (or batch) asks
``SELECT pg_current_snapshot()`` (a few bytes, no table), and a key remembered under that very snapshot is
returned without its statement; the others are read, and remembered under it. Two equal snapshots (xmin, xmax,
in-progress ids) see exactly the same committed transactions, and every transaction that ends changes the
snapshot for good (its id leaves the in-progress list, or xmax moves past it), so an entry is returned only
while nothing has committed since it was read: never stale, like SQLite's. A result read after a newer commit
than its tag only misses later. Any commit in the cluster (another database's too) makes the next read of every
key run its statement again.

The snapshot is asked for only when at least half of the read's keys are remembered under the last snapshot seen
(so they may still hold: :func:`tag`). Otherwise the statement would run for most of them anyway, so it runs
at once for all, without that round trip, and its results are remembered under the last snapshot seen. That one
was taken before the read, which is all a tag needs: a result is returned again only under an unchanged
snapshot, when nothing committed since the tag, so none between the tag and the read either. Keys read once (a
fleet spread over many pointers) cost one round trip, as before; keys read again cost one small statement while
nothing commits, and two just after a commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

from registry.cache import Memo

T = TypeVar("T")
SNAPSHOT = "SELECT pg_current_snapshot()::text"  # the snapshot a statement runs under, as text


async def tag(
    memo: Memo[Hashable, tuple[object, Any]],
    last: str | None,
    keys: Iterable[Hashable],
    ask: Callable[[], Awaitable[str]],
) -> str:
    """The snapshot to check ``keys`` against and remember their reads under: ``ask()`` when at least half of
    them are remembered under ``last`` (the newest seen), or none was seen yet; else ``last`` (see the module's
    doc: the statement runs for every key anyway, so the round trip would save little)."""
    if last is None:
        return await ask()
    n = may_hold = 0
    for key in keys:
        n += 1
        hit = memo.get(key)
        may_hold += hit is not None and hit[0] == last
    return await ask() if may_hold and 2 * may_hold >= n else last


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
