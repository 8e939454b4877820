"""Migration 0010 (pin usage) counts the pins already there, per publisher, and its triggers keep the count from
then on; going back drops them (SQLite and Postgres)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from registry.db.engine import create_engine
from registry.db.migrate import downgrade, upgrade

BOTH = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
NOW = "CURRENT_TIMESTAMP"


def _pin(i: int, publisher: int, size: str, deleted: str) -> str:
    return (
        "INSERT INTO pins (requestid, publisher_id, cid, cid_key, origins, meta, status, info, size, created, "
        f"updated_at, deleted_at) VALUES ('r{i}', {publisher}, 'c{i}', 'c{i}', '[]', '{{}}', 'pinned', '{{}}', "
        f"{size}, {NOW}, {NOW}, {deleted})"
    )


@pytest.mark.parametrize("empty_db_url", BOTH, indirect=True)
async def test_existing_pins_are_counted_and_then_kept_by_the_triggers(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    try:
        await upgrade(engine, "0009")
        async with engine.begin() as conn:
            for i in (1, 2, 3):
                await conn.execute(
                    text(f"INSERT INTO publishers (id, name, created_at) VALUES ({i}, 'p{i}', {NOW})")
                )
            for sql in (
                _pin(1, 1, "10", "NULL"),
                _pin(2, 1, "NULL", "NULL"),
                _pin(3, 1, "99", NOW),  # deleted: not counted
                _pin(4, 2, "5", "NULL"),
            ):
                await conn.execute(text(sql))
        await upgrade(engine)
        usage = "SELECT publisher_id, pins, bytes FROM pin_usage ORDER BY publisher_id"
        async with engine.connect() as conn:
            assert [tuple(r) for r in await conn.execute(text(usage))] == [(1, 2, 10), (2, 1, 5)]
        async with engine.begin() as conn:
            await conn.execute(text(_pin(5, 3, "7", "NULL")))
            await conn.execute(text(f"UPDATE pins SET deleted_at = {NOW} WHERE requestid = 'r1'"))
        async with engine.connect() as conn:
            assert [tuple(r) for r in await conn.execute(text(usage))] == [(1, 1, 0), (2, 1, 5), (3, 1, 7)]

        await downgrade(engine, "0009")
        async with engine.begin() as conn:  # no trigger left to write into a table that is gone
            await conn.execute(text(_pin(6, 3, "1", "NULL")))
            await conn.execute(text("DELETE FROM pins"))
    finally:
        await engine.dispose()
