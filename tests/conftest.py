"""Shared fixtures: settings, a freshly migrated database per test on SQLite and on Postgres, a pack factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from registry.db.engine import create_engine, session_factory
from registry.db.fastread import FastReads
from registry.settings import Settings, load_settings
from tests import dbutil
from tests.factories import PackFactory

pytest_plugins = ["tests.ipfs_testnode.plugin"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "index.sqlite3"
    asyncio.run(dbutil.migrate_url(dbutil.sqlite_url(path)))
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = dbutil.unique_name("modelpack_tmpl")
    dbutil.pg_create(name)
    try:
        asyncio.run(dbutil.migrate_url(dbutil.pg_url(name)))
        yield name
    finally:
        dbutil.pg_drop(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a migrated, empty database of each kind; dropped after the test."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        yield dbutil.clone_sqlite(template, tmp_path / "index.sqlite3")
        return
    template = request.getfixturevalue("pg_template")
    name = dbutil.unique_name("modelpack_t")
    dbutil.pg_create(name, template=template)
    try:
        yield dbutil.pg_url(name)
    finally:
        dbutil.pg_drop(name)


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty (unmigrated) database; parametrize indirectly with "sqlite" or "postgres"."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield dbutil.sqlite_url(tmp_path / "empty.sqlite3")
        return
    name = dbutil.unique_name("modelpack_e")
    dbutil.pg_create(name)
    try:
        yield dbutil.pg_url(name)
    finally:
        dbutil.pg_drop(name)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
async def fast_reads(engine: AsyncEngine) -> AsyncIterator[FastReads]:
    """The raw-driver hot reads beside the test's engine (registry.db.fastread)."""
    reads = FastReads(engine)
    yield reads
    await reads.close()


@pytest.fixture
def pack_factory(sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> PackFactory:
    """Publishes real packs into the test's database, their bytes in a blockstore of its own."""
    return PackFactory(sessions, FsBlockstore(tmp_path / "factory-blocks", FsBlockstoreConfig(fsync=False)))


@pytest.fixture
def settings(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a daemon on a fresh database and data dir, with quick job timings."""
    for var in [v for v in __import__("os").environ if v.startswith("MODELPACK_")]:
        monkeypatch.delenv(var)
    return load_settings(
        None,
        storage={"data_dir": str(tmp_path / "data"), "fsync": False},
        database={"url": db_url},
        server={"port": 0},
        jobs={"lease_s": 5.0, "heartbeat_s": 1.0, "poll_interval_s": 0.1, "backoff_base_s": 0.1},
        # Periodic jobs stay out of tests that count the queue; the tests of a periodic job set its interval.
        webhooks={"dispatch_interval_s": 3600.0},
        curation={"sweep_interval_s": 3600.0},
    )
