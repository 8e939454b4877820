"""Pins of the Pinning Service API as replication sees them: rows of `pins` (read through the database, as
pack rows are), so GC keeps what a pin holds and reconcile/audit queue pins that need work.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.cids import normalize_cid
from pinner.content_errors import InvalidCid
from registry.db.pins import Pin, PinStatus
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import JobQueue


def _key(cid: str) -> str:
    try:
        return normalize_cid(cid)
    except InvalidCid:
        return cid


async def pin_holds(s: AsyncSession, cid: str) -> bool:
    """Whether any pin row (live, or deleted but not yet unpinned) holds ``cid``."""
    return (await s.execute(select(Pin.id).where(Pin.cid_key == _key(cid)).limit(1))).first() is not None


async def enqueue_pins(queue: JobQueue, requestids: list[str]) -> None:
    for rid in requestids:
        await queue.enqueue(JobKind.PIN, {"requestid": rid}, dedupe_key=JobKind.PIN.key(rid))


async def enqueue_pins_of(sessions: async_sessionmaker[AsyncSession], queue: JobQueue, cid: str) -> None:
    """After an audit lost a replica of ``cid``: the pins that hold it place it again."""
    async with sessions() as s:
        rids = list((await s.execute(select(Pin.requestid).where(Pin.cid_key == _key(cid)))).scalars())
    await enqueue_pins(queue, rids)


async def enqueue_unsettled_pins(
    sessions: async_sessionmaker[AsyncSession], queue: JobQueue, page: int = 1000
) -> int:
    """Every pin that may need work: not yet pinned or failed, deleted (to unpin), or pinned (re-checked);
    read ``page`` rows at a time (keyset on the id), so memory stays bounded however many pins there are."""
    unsettled = (Pin.status != PinStatus.FAILED) | Pin.deleted_at.is_not(None)
    after, total = 0, 0
    while True:
        async with sessions() as s:
            q = select(Pin.id, Pin.requestid).where(unsettled, Pin.id > after).order_by(Pin.id).limit(page)
            rows = (await s.execute(q)).all()
        await enqueue_pins(queue, [rid for _, rid in rows])
        total += len(rows)
        if len(rows) < page:
            return total
        after = rows[-1][0]
