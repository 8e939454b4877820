"""Apply and check migrations; the daemon refuses an unmigrated or newer-than-code database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from registry.errors import DatabaseNotReady

SCRIPT_LOCATION = str(Path(migrations.__file__).parent)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def check_drift(engine: AsyncEngine) -> None:
    """Raise if the models and the migrated schema differ (``alembic check``)."""
    async with engine.connect() as conn:
        await conn.run_sync(lambda c: command.check(alembic_config(c)))


async def require_current(engine: AsyncEngine) -> str:
    """Return the revision, or raise DatabaseNotReady saying what to do."""
    rev = await current_revision(engine)
    head = head_revision()
    if rev is None:
        raise DatabaseNotReady("the database has no schema yet: run `modelpack migrate` first")
    if rev == head:
        return rev
    if rev not in _known_revisions():
        raise DatabaseNotReady(
            f"the database is at migration {rev}, which this version of modelpack does not know "
            f"(newer than code, head is {head}): upgrade modelpack"
        )
    raise DatabaseNotReady(
        f"the database is at migration {rev}, code expects {head}: run `modelpack migrate`"
    )
