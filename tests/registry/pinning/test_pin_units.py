"""Replication's view of pins (registry/replication/pin_units.py), on SQLite and Postgres: GC's keep check
sees a pin's CID in any spelling, deleted-but-not-unpinned pins included; reconcile queues unsettled pins.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.cids import normalize_cid
from registry.db.base import utcnow
from registry.db.jobs import Job
from registry.db.models import Publisher
from registry.db.pins import Pin, PinStatus
from registry.jobs.sql import SqlJobQueue
from registry.replication.pin_units import enqueue_unsettled_pins, pin_holds
from tests.registry.pinning.conftest import raw_cid


async def _pin(s: AsyncSession, cid: str, rid: str, status: PinStatus, deleted: bool = False) -> None:
    pub = (await s.execute(select(Publisher).where(Publisher.name == "p"))).scalar_one_or_none()
    if pub is None:
        pub = Publisher(name="p")
        s.add(pub)
        await s.flush()
    s.add(
        Pin(
            requestid=rid,
            publisher_id=pub.id,
            cid=cid,
            cid_key=normalize_cid(cid),
            origins=[],
            meta={},
            info={},
            status=status,
            deleted_at=utcnow() if deleted else None,
        )
    )


async def test_gc_keep_check_sees_pins_and_reconcile_queues_unsettled_ones(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    held, other = raw_cid(b"held"), raw_cid(b"free")
    async with sessions() as s, s.begin():
        await _pin(s, held, "r1", PinStatus.PINNED)
        await _pin(s, raw_cid(b"gone"), "r2", PinStatus.PINNED, deleted=True)
        await _pin(s, raw_cid(b"bad"), "r3", PinStatus.FAILED)
    async with sessions() as s:
        assert await pin_holds(s, held)
        assert await pin_holds(s, held.upper())  # the base32upper spelling (B...) of the same CID
        assert await pin_holds(s, raw_cid(b"gone"))  # not yet unpinned: still held
        assert not await pin_holds(s, other)
    assert await enqueue_unsettled_pins(sessions, SqlJobQueue(sessions)) == 2
    async with sessions() as s:
        keys = set((await s.execute(select(Job.dedupe_key))).scalars())
    assert keys == {"pin:r1", "pin:r2"}  # a failed pin is settled
