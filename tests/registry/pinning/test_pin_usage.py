"""The publisher's pin usage (count and bytes of live pins, the quotas' input) is kept by the database's own
triggers: it equals a count over the pins after every kind of write, by any code (SQLite and Postgres)."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.models import Publisher
from registry.db.pins import Pin, PinStatus, PinUsage
from tests.registry.pinning.conftest import raw_cid


async def _usage(s: AsyncSession) -> dict[int, tuple[int, int]]:
    kept = {
        p: (n, b)
        for p, n, b in (await s.execute(select(PinUsage.publisher_id, PinUsage.pins, PinUsage.bytes)))
    }
    counted = {
        p: (n, b)
        for p, n, b in await s.execute(
            select(Pin.publisher_id, func.count(), func.coalesce(func.sum(Pin.size), 0))
            .where(Pin.deleted_at.is_(None))
            .group_by(Pin.publisher_id)
        )
    }
    assert {p: v for p, v in kept.items() if v != (0, 0)} == counted
    return kept


def _pin(publisher_id: int, i: int, size: int | None = None) -> Pin:
    now = utcnow()
    return Pin(
        requestid=f"r{publisher_id}-{i}",
        publisher_id=publisher_id,
        cid=raw_cid(b"%d" % i),
        cid_key=raw_cid(b"%d" % i),
        origins=[],
        meta={},
        status=PinStatus.QUEUED,
        info={},
        size=size,
        created=now,
        updated_at=now,
    )


async def test_usage_follows_inserts_deletes_and_size_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s, s.begin():
        alice, bob = Publisher(name="alice"), Publisher(name="bob")
        s.add_all([alice, bob])
        await s.flush()
        a, b = alice.id, bob.id
        s.add_all([_pin(a, i, 100 * i or None) for i in range(4)] + [_pin(b, 9, 7)])
    async with sessions() as s:
        assert await _usage(s) == {a: (4, 600), b: (1, 7)}

    async with sessions() as s, s.begin():  # pinned: the size becomes known; another pin hidden
        await s.execute(
            update(Pin).where(Pin.requestid == f"r{a}-0").values(size=50, status=PinStatus.PINNED)
        )
        await s.execute(update(Pin).where(Pin.requestid == f"r{a}-1").values(deleted_at=utcnow()))
        await s.execute(update(Pin).where(Pin.requestid == f"r{a}-2").values(status=PinStatus.FAILED))
    async with sessions() as s:
        assert await _usage(s) == {a: (3, 550), b: (1, 7)}

    async with sessions() as s, s.begin():  # rows go: a hidden one (no change), a live one, and undeleting
        await s.execute(delete(Pin).where(Pin.requestid == f"r{a}-1"))
        await s.execute(delete(Pin).where(Pin.requestid == f"r{a}-3"))
        await s.execute(update(Pin).where(Pin.requestid == f"r{b}-9").values(deleted_at=utcnow()))
    async with sessions() as s:
        assert await _usage(s) == {a: (2, 250), b: (0, 0)}
    async with sessions() as s, s.begin():
        await s.execute(update(Pin).where(Pin.requestid == f"r{b}-9").values(deleted_at=None, size=8))
        await s.execute(delete(Publisher).where(Publisher.id == a))  # cascades to its pins and usage
    async with sessions() as s:
        assert await _usage(s) == {b: (1, 8)}
