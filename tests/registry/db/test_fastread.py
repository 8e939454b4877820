"""The raw-driver hot reads (registry.db.fastread) return what the ORM returns, see one state per snapshot,
and cannot write; on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.fastread import FastReads, Query
from registry.db.models import Model, Namespace, Pack, PackState
from tests.conftest import PackFactory

LISTINGS = Query(
    select(Pack.cid, Pack.state, Pack.created_at, Pack.updated_at, Model.name, Namespace.name)
    .join(Model, Model.id == Pack.model_id)
    .join(Namespace, Namespace.id == Model.namespace_id)
    .where(Namespace.name == bindparam("ns"))
    .order_by(Pack.id)
)
STATE = Query(select(Pack.state).where(Pack.cid == bindparam("cid")))
NEWER = Query(select(Pack.cid).where(Pack.created_at > bindparam("since")).order_by(Pack.id).limit(5))


async def test_rows_match_the_orm(
    sessions: async_sessionmaker[AsyncSession], fast_reads: FastReads, pack_factory: PackFactory
) -> None:
    cids = [await pack_factory.publish("acme/tiny", await pack_factory.manifest(f"1.{i}")) for i in range(3)]
    async with sessions() as s:
        orm = (
            await s.execute(
                select(Pack.cid, Pack.state, Pack.created_at, Pack.updated_at, Model.name, Namespace.name)
                .join(Model, Model.id == Pack.model_id)
                .join(Namespace, Namespace.id == Model.namespace_id)
                .where(Namespace.name == "acme")
                .order_by(Pack.id)
            )
        ).all()
    fast = await fast_reads.all(LISTINGS, ns="acme")
    assert [r[0] for r in fast] == cids
    assert fast == [tuple(r) for r in orm]
    for row in fast:
        assert isinstance(row[1], PackState)  # the enum member, not its string
        assert row[2].tzinfo is not None and row[2].utcoffset() == timedelta(0)  # aware UTC
    assert await fast_reads.all(LISTINGS, ns="nobody") == []
    # bound values pass through the column types too (an aware datetime on both databases)
    assert [r[0] for r in await fast_reads.all(NEWER, since=fast[0][2])] == cids[1:]
    with pytest.raises(KeyError):
        await fast_reads.all(LISTINGS)


async def test_a_snapshot_sees_one_state(
    sessions: async_sessionmaker[AsyncSession], fast_reads: FastReads, pack_factory: PackFactory
) -> None:
    cid = await pack_factory.publish("acme/tiny", await pack_factory.manifest())
    async with fast_reads.snapshot() as snap:
        before = await snap.first(STATE, cid=cid)
        async with sessions.begin() as s:  # another connection moves the state meanwhile
            await s.execute(update(Pack).where(Pack.cid == cid).values(state=PackState.REJECTED))
        assert await snap.first(STATE, cid=cid) == before  # the snapshot still sees the old state
    assert before is not None and before[0] != PackState.REJECTED
    assert await fast_reads.first(STATE, cid=cid) == (PackState.REJECTED,)  # a new read sees the change


async def test_fast_reads_cannot_write(fast_reads: FastReads) -> None:
    sneaky = Query(select(Pack.cid).where(Pack.cid == bindparam("cid")))
    c = sneaky.compiled(fast_reads.dialect)
    mark = "?" if fast_reads.dialect.name == "sqlite" else "$1"
    object.__setattr__(
        c, "sql", f"DELETE FROM packs WHERE cid = {mark}"
    )  # a statement swapped behind its back
    with pytest.raises(Exception, match=r"(?i)read.?only|attempt to write"):
        await fast_reads.all(sneaky, cid="x")


def test_expanding_in_is_refused(fast_reads: FastReads) -> None:
    q = Query(select(Pack.cid).where(Pack.cid.in_(bindparam("cids", expanding=True))))
    with pytest.raises(ValueError, match="expanding"):
        q.compiled(fast_reads.dialect)


async def test_closed_reader_releases_its_connections(
    fast_reads: FastReads, pack_factory: PackFactory
) -> None:
    cid = await pack_factory.publish("acme/tiny", await pack_factory.manifest())
    assert await fast_reads.first(STATE, cid=cid) is not None
    await fast_reads.close()
    assert fast_reads._idle == [] and fast_reads._pg is None


def test_the_resolve_body_is_the_schemas_body() -> None:
    """The resolve route serializes the view directly; it must equal what the PointerOut schema gives."""
    from registry.api.pointers import POINTER_JSON
    from registry.api.schemas import PointerOut
    from registry.packs.pointers import PointerView

    at = datetime(2026, 12, 2, 5, 6, 7, 890123, tzinfo=UTC)
    for by in ("alice", None):
        view = PointerView("Acme", "Tiny-LLM", "latest", "bafkreiabc", at, by)
        assert (
            POINTER_JSON.dump_json(view)
            == PointerOut.model_validate(view, from_attributes=True).model_dump_json().encode()
        )
