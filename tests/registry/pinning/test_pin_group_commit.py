"""Concurrent pin adds share one transaction (group commit) and each keeps its own answer: the quota holds
inside a batch, a row the database refuses fails only its own add, and every added pin has its job
(SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.jobs import Job
from registry.db.models import Publisher
from registry.db.pins import Pin
from registry.jobs.sql import SqlJobQueue
from registry.pinning.config import PinningConfig
from registry.pinning.requests import parse_pin
from registry.pinning.service import PinService, QuotaExceeded
from tests.registry.pinning.conftest import raw_cid


async def _publisher(sessions: async_sessionmaker[AsyncSession], name: str) -> int:
    async with sessions() as s, s.begin():
        p = Publisher(name=name)
        s.add(p)
        await s.flush()
        return p.id


def _begins(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    seen: list[int] = []
    event.listen(sessions.kw["bind"].sync_engine, "begin", lambda _c: seen.append(1))
    return seen


async def test_concurrent_adds_commit_together_and_the_quota_holds_in_a_batch(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    config = PinningConfig(max_pins=5)
    svc = PinService(sessions, SqlJobQueue(sessions), config)
    alice, bob = await _publisher(sessions, "alice"), await _publisher(sessions, "bob")
    begins = _begins(sessions)
    reqs = [
        (alice, parse_pin({"cid": raw_cid(b"a%d" % i), "origins": [], "meta": {"i": str(i)}}, config))
        for i in range(8)
    ]
    reqs += [(bob, parse_pin({"cid": raw_cid(b"b%d" % i)}, config)) for i in range(3)]
    out = await asyncio.gather(*(svc.add(p, r) for p, r in reqs), return_exceptions=True)

    ok = [o for o in out if not isinstance(o, BaseException)]
    refused = [o for o in out if isinstance(o, BaseException)]
    assert len(ok) == 5 + 3 and len(refused) == 3  # alice: 5 of 8 (her quota), bob: all 3
    assert all(isinstance(e, QuotaExceeded) and "quota is 5" in str(e) for e in refused)
    assert [isinstance(o, QuotaExceeded) for o in out[:8]] == [False] * 5 + [True] * 3  # in arrival order
    assert len(begins) < len(reqs)  # the adds shared transactions
    async with sessions() as s:
        rows = dict(
            (await s.execute(select(Pin.publisher_id, func.count()).group_by(Pin.publisher_id))).all()
        )
        jobs = {k: p for k, p in await s.execute(select(Job.dedupe_key, Job.payload))}
        stored = {r.requestid: r for r in (await s.execute(select(Pin))).scalars()}
    assert rows == {alice: 5, bob: 3}
    assert jobs == {
        f"pin:{v.requestid}": {"requestid": v.requestid} for v in ok if not isinstance(v, BaseException)
    }
    for v in ok:  # what the batch's one insert wrote is what the view said
        assert not isinstance(v, BaseException)
        row = stored[v.requestid]
        assert (row.cid, row.origins, row.meta, row.info, row.status, row.created) == (
            v.cid,
            list(v.origins),
            v.meta,
            v.info,
            v.status,
            v.created,
        )


async def test_a_row_the_database_refuses_fails_only_its_own_add(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = PinningConfig()
    svc = PinService(sessions, SqlJobQueue(sessions), config)
    alice = await _publisher(sessions, "alice")
    good = [parse_pin({"cid": raw_cid(b"g%d" % i)}, config) for i in range(4)]
    bad = parse_pin({"cid": raw_cid(b"bad")}, config)
    values = svc._values

    def broken(publisher_id: int, req: Any, replaces: str | None = None) -> dict[str, Any]:
        v = values(publisher_id, req, replaces)
        if req is bad:
            v["publisher_id"] = 10**9  # no such publisher: the foreign key refuses the row
        return v

    monkeypatch.setattr(svc, "_values", broken)
    out = await asyncio.gather(
        *(svc.add(alice, r) for r in [*good[:2], bad, *good[2:]]), return_exceptions=True
    )
    assert [isinstance(o, BaseException) for o in out] == [False, False, True, False, False]
    assert "foreign key" in str(out[2]).lower() or "FOREIGN KEY" in str(out[2])
    async with sessions() as s:
        cids = set((await s.execute(select(Pin.cid))).scalars())
    assert cids == {r.cid for r in good}
