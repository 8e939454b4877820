"""Real databases for tests: a migrated SQLite file or Postgres database, one fresh copy per test.

Postgres: the schema is migrated once into a template database; each test clones it (CREATE DATABASE ...
TEMPLATE), which takes a few milliseconds, and drops its clone afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg

PG_HOST = os.environ.get("MODELPACK_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MODELPACK_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MODELPACK_TEST_PG_USER", "postgres")


def pg_url(db: str, driver: str = "postgresql+asyncpg") -> str:
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_admin(sql: str) -> None:
    asyncio.run(_admin(sql))


def pg_create(name: str, template: str | None = None) -> None:
    tmpl = f" TEMPLATE {template}" if template else ""
    pg_admin(f'CREATE DATABASE "{name}"{tmpl}')


def pg_drop(name: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


async def migrate_url(url: str) -> None:
    from registry.db.engine import create_engine
    from registry.db.migrate import upgrade

    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def clone_sqlite(template: Path, dest: Path) -> str:
    shutil.copyfile(template, dest)
    return sqlite_url(dest)
