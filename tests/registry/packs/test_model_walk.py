"""The model list walks namespaces in name order (registry.packs.browse_reads.walk_models): every page size,
with and without a namespace, over empty namespaces, gives exactly the sorted list (SQLite and Postgres)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.fastread import FastReads
from registry.db.models import Model, Namespace
from registry.packs.browse import BrowseService

LAYOUT = {
    "acme": ["b", "a", "C-up", "z"],
    "empty1": [],
    "beta": ["m"],
    "empty2": [],
    "Zeta": ["x", "y"],
    "delta": [],
}


async def _browse(
    sessions: async_sessionmaker[AsyncSession], fast_reads: FastReads, layout: dict[str, list[str]]
) -> BrowseService:
    async with sessions() as s, s.begin():
        for ns, models in layout.items():
            space = Namespace(name=ns)
            s.add(space)
            await s.flush()
            for m in models:
                s.add(Model(namespace_id=space.id, name=m))
    return BrowseService(sessions, fast_reads)


@pytest.fixture
async def browse(sessions: async_sessionmaker[AsyncSession], fast_reads: FastReads) -> BrowseService:
    return await _browse(sessions, fast_reads, LAYOUT)


async def _all(browse: BrowseService, limit: int, namespace: str | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    after = None
    for _ in range(50):
        page = await browse.list_models(namespace=namespace, prefix=None, after=after, limit=limit)
        assert len(page) <= limit
        out += [(m.namespace, m.name) for m in page]
        if len(page) < limit:
            return out
        after = (page[-1].namespace, page[-1].name)
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
async def test_pages_give_the_sorted_list(
    browse: BrowseService, sessions: async_sessionmaker[AsyncSession], limit: int
) -> None:
    async with (
        sessions() as s
    ):  # the database's own order (its collation): by namespace name, then model name
        names = [
            tuple(r)
            for r in await s.execute(
                select(Namespace.name, Model.name)
                .join(Namespace, Namespace.id == Model.namespace_id)
                .order_by(Namespace.name, Model.name)
            )
        ]
    assert set(names) == {(ns, m) for ns, ms in LAYOUT.items() for m in ms} and len(names) == 7
    assert await _all(browse, limit, None) == names
    assert await _all(browse, limit, "ACME") == [p for p in names if p[0] == "acme"]  # case-blind namespace
    assert await _all(browse, limit, "empty1") == []
    assert await browse.list_models(namespace="nobody", prefix=None, after=None, limit=limit) == ()


PREFIXED = {"acme": ["m1", "M12", "m123", "m2", "m1_x", "m1%y", "n1"], "beta": ["m10", "zz"], "gamma": ["m"]}


@pytest.fixture
async def prefixed(sessions: async_sessionmaker[AsyncSession], fast_reads: FastReads) -> BrowseService:
    return await _browse(sessions, fast_reads, PREFIXED)


@pytest.mark.parametrize("prefix", ["m", "M1", "m12", "m1_", "m1%", "n", "z", "m2", "q", "é", "m1\\"])
async def test_prefix_search_finds_exactly_the_names_that_start_with_it(
    prefixed: BrowseService, prefix: str
) -> None:
    """Case-blind, wildcards taken literally, bounded by the index range (migration 0011) and the pattern."""
    want = sorted((ns, m) for ns, ms in PREFIXED.items() for m in ms if m.lower().startswith(prefix.lower()))
    got: list[tuple[str, str]] = []
    after = None
    for _ in range(20):
        page = await prefixed.list_models(namespace=None, prefix=prefix, after=after, limit=2)
        got += [(m.namespace, m.name) for m in page]
        if len(page) < 2:
            break
        after = (page[-1].namespace, page[-1].name)
    assert sorted(got) == want
    in_acme = await prefixed.list_models(namespace="ACME", prefix=prefix, after=None, limit=100)
    assert sorted((m.namespace, m.name) for m in in_acme) == [p for p in want if p[0] == "acme"]


async def test_the_prefix_range_has_its_index(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Migration 0011's index exists with the bytewise key the search bounds (alembic check cannot see it)."""
    async with sessions() as s:
        if s.bind.dialect.name == "postgresql":
            sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_models_name_bytes'"
        else:
            sql = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'ix_models_name_bytes'"
        (definition,) = (await s.execute(text(sql))).one()
    assert "lower(" in definition and "name" in definition
    if s.bind.dialect.name == "postgresql":
        assert 'COLLATE "C"' in definition
