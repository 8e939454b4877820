"""Alembic environment: runs on the connection handed in by registry.db.migrate (sync, via run_sync)."""

from __future__ import annotations

import warnings

from alembic import context

from registry.db import jobs, models  # noqa: F401  (registers every table on Base.metadata)
from registry.db.base import Base

config = context.config
target_metadata = Base.metadata
# Expression indexes (lower(name), migrations 0009 and 0011): SQLite cannot reflect them, and SQLAlchemy reflects
# Postgres's without their COLLATE, so `alembic check` leaves them out on both sides;
# tests/registry/db/test_names_case.py and tests/registry/packs/test_model_walk.py check they exist and hold.
EXPRESSION_INDEXES = frozenset({"uq_namespaces_name_key", "uq_models_name_key", "ix_models_name_bytes"})


def _include(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_include,
    )
    with context.begin_transaction(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings(
            "ignore", message="autogenerate skipping metadata-specified expression-based index"
        )
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `modelpack migrate` (registry.db.migrate)")
_run(connection)
