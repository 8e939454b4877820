"""Alembic environment: runs on the connection handed in by registry.db.migrate (sync, via run_sync)."""

from __future__ import annotations

from alembic import context

from registry.db import jobs, models  # noqa: F401  (registers every table on Base.metadata)
from registry.db.base import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `modelpack migrate` (registry.db.migrate)")
_run(connection)
