"""Migration 0004 (pack listings) carries existing packs into content + listing rows and back, on both databases;
going back refuses while a CID is listed under several models."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from registry.db.engine import create_engine, session_factory
from registry.db.listings import find_listing, listings_of
from registry.db.migrate import check_drift, current_revision, downgrade, head_revision, upgrade
from registry.db.models import PackState, PackStateChange, Pointer, Shard, Signature, ValidationReport

BOTH = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
C1 = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
C2 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
NOW = "CURRENT_TIMESTAMP"
SEED = [
    f"INSERT INTO publishers (id, name, created_at) VALUES (1, 'alice', {NOW})",
    f"INSERT INTO namespaces (id, name, required_signatures, created_at) VALUES (1, 'acme', 1, {NOW})",
    f"INSERT INTO namespaces (id, name, required_signatures, created_at) VALUES (2, 'evil', 1, {NOW})",
    f"INSERT INTO models (id, namespace_id, name, created_at) VALUES (1, 1, 'tiny', {NOW})",
    f"INSERT INTO models (id, namespace_id, name, created_at) VALUES (2, 2, 'tiny', {NOW})",
    "INSERT INTO packs (cid, model_id, model_version, manifest, state, state_reason, flagged, total_size, "
    f"shard_count, published_by, created_at, updated_at) VALUES ('{C1}', 1, 'v1', :m1, 'curated', 'ok', NULL, "
    f"100, 1, 1, {NOW}, {NOW})",
    "INSERT INTO packs (cid, model_id, model_version, manifest, state, state_reason, flagged, total_size, "
    f"shard_count, published_by, created_at, updated_at) VALUES ('{C2}', 1, 'v2', :m2, 'available', NULL, "
    f"'degraded (x): y', 7, 1, NULL, {NOW}, {NOW})",
    "INSERT INTO shards (pack_cid, position, filename, cid, sha256, size) "
    f"VALUES ('{C1}', 0, 'model.safetensors', 'bafkreishard', '{'a' * 64}', 100)",
    "INSERT INTO signatures (pack_cid, key_id, kind, algorithm, signature, verdict, received_at) "
    f"VALUES ('{C1}', 'k1', 'inline', 'ed25519', :sig, 'valid', {NOW})",
    "INSERT INTO validation_reports (pack_cid, verdict, reason, report, started_at) "
    f"VALUES ('{C1}', 'pass', 'fine', '{{}}', {NOW})",
    "INSERT INTO pack_state_history (pack_cid, from_state, to_state, reason, at) "
    f"VALUES ('{C1}', NULL, 'received', 'r', {NOW})",
    "INSERT INTO pack_state_history (pack_cid, from_state, to_state, reason, at) "
    f"VALUES ('{C2}', NULL, 'received', 'r', {NOW})",
    f"INSERT INTO pointers (model_id, tag, pack_cid, updated_at) VALUES (1, 'curated', '{C1}', {NOW})",
]
PARAMS: dict[str, Any] = {"m1": b'{"one":1}', "m2": b'{"two":2}', "sig": b"\x01" * 64}
OLD_PACKS = "SELECT cid, model_id, model_version, manifest, state, state_reason, flagged, total_size, shard_count, published_by FROM packs ORDER BY cid"


async def _rows(engine: AsyncEngine, sql: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
            for r in await conn.execute(text(sql))
        ]


async def _seeded(url: str) -> AsyncEngine:
    engine = create_engine(url)
    await upgrade(engine, "0003")
    async with engine.begin() as conn:
        for sql in SEED:
            names = {k: v for k, v in PARAMS.items() if f":{k}" in sql}
            await conn.execute(text(sql), names)
    return engine


@pytest.mark.parametrize("empty_db_url", BOTH, indirect=True)
async def test_upgrade_carries_packs_into_content_and_listings_and_back(empty_db_url: str) -> None:
    engine = await _seeded(empty_db_url)
    try:
        before = await _rows(engine, OLD_PACKS)
        await upgrade(engine)
        await check_drift(engine)
        sessions = session_factory(engine)
        async with sessions() as s:
            one = await find_listing(s, C1)
            assert (one.model_id, one.model_version, one.state, one.state_reason) == (
                1,
                "v1",
                PackState.CURATED,
                "ok",
            )
            assert (one.manifest, one.total_size, one.shard_count, one.published_by) == (
                b'{"one":1}',
                100,
                1,
                1,
            )
            two = await find_listing(s, C2, 1)
            assert (two.state, two.flagged, two.total_size) == (PackState.AVAILABLE, "degraded (x): y", 7)
            assert one.id != two.id
            history = (await s.execute(select(PackStateChange.pack_cid, PackStateChange.model_id))).all()
            assert sorted(history) == [(C1, 1), (C2, 1)]
            assert (await s.execute(select(Pointer.pack_cid))).scalar_one() == C1
            for table in (Shard, Signature, ValidationReport):
                assert (await s.execute(select(table.pack_cid))).scalar_one() == C1

        await downgrade(engine, "0003")
        assert await _rows(engine, OLD_PACKS) == before
        assert len(await _rows(engine, "SELECT pack_cid FROM pack_state_history")) == 2
        assert len(await _rows(engine, "SELECT id FROM shards WHERE pack_cid = '" + C1 + "'")) == 1
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("empty_db_url", BOTH, indirect=True)
async def test_downgrade_refuses_while_a_cid_has_several_listings(empty_db_url: str) -> None:
    engine = await _seeded(empty_db_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO packs (cid, model_id, model_version, state, created_at, updated_at) "
                    f"VALUES ('{C1}', 2, 'v1', 'available', {NOW}, {NOW})"
                )
            )
        async with session_factory(engine)() as s:
            assert [p.model_id for p in await listings_of(s, C1)] == [1, 2]
        with pytest.raises(RuntimeError, match="listed under several models"):
            await downgrade(engine, "0003")
        assert await current_revision(engine) == head_revision()
        assert len(await _rows(engine, f"SELECT id FROM packs WHERE cid = '{C1}'")) == 2
    finally:
        await engine.dispose()
