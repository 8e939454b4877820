"""Migrations run on SQLite and Postgres, go down and up again, and match the models exactly."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from registry.db.base import Base
from registry.db.engine import create_engine
from registry.db.migrate import (
    check_drift,
    current_revision,
    downgrade,
    head_revision,
    require_current,
    upgrade,
)
from registry.errors import DatabaseNotReady

BOTH = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("empty_db_url", BOTH, indirect=True)
async def test_upgrade_downgrade_upgrade_and_no_drift(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    try:
        with pytest.raises(DatabaseNotReady, match="run `modelpack migrate`"):
            await require_current(engine)
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert set(Base.metadata.tables) <= tables
        await check_drift(engine)  # alembic check: models and migrations agree

        await downgrade(engine, "base")
        async with engine.connect() as conn:
            left = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert left <= {"alembic_version"}
        assert await current_revision(engine) is None

        await upgrade(engine)
        await check_drift(engine)
        assert await require_current(engine) == head_revision()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("empty_db_url", BOTH, indirect=True)
async def test_database_newer_than_code_is_refused(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
        with pytest.raises(DatabaseNotReady, match="newer than code"):
            await require_current(engine)
    finally:
        await engine.dispose()


async def test_check_constraints_hold(engine) -> None:  # type: ignore[no-untyped-def]
    """CHECKs are enforced by both databases (not just declared)."""
    from sqlalchemy.exc import IntegrityError

    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO namespaces (name, required_signatures, created_at) VALUES ('a', 1, CURRENT_TIMESTAMP)"
            )
        )
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO namespaces (name, required_signatures, created_at) VALUES ('b', -1, CURRENT_TIMESTAMP)"
                )
            )
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO jobs (kind, payload, state, priority, attempts, max_attempts, run_after, created_at)"
                    " VALUES ('k', '{}', 'exploded', 0, 0, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
