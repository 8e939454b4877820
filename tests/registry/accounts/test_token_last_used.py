"""#12 item 14: a token check writes ``last_used_at`` at most once a minute per token, and otherwise takes no
write transaction (on SQLite: no ``BEGIN IMMEDIATE``, the write lock). The clock is injected."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from registry.accounts.auth import AuthService
from registry.db.models import ApiToken

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs (BEGIN included on SQLite)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.strip().upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def writes(seen: list[str]) -> list[str]:
    return [s for s in seen if s.startswith(("UPDATE", "INSERT", "DELETE", "BEGIN IMMEDIATE"))]


async def last_used(sessions: async_sessionmaker[AsyncSession], token_id: int) -> datetime | None:
    async with sessions() as s:
        return (await s.execute(select(ApiToken.last_used_at).where(ApiToken.id == token_id))).scalar_one()


async def test_last_used_is_written_at_most_once_a_minute(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    auth = AuthService(sessions, clock=clock, cache_ttl_s=0)  # every check reads the row
    issued = await auth.create_token("alice", namespaces=["acme"])

    with statements(engine) as seen:
        await auth.authenticate(issued.token)
    assert any(s.startswith("UPDATE API_TOKENS") for s in seen)  # first use: recorded
    assert await last_used(sessions, issued.id) == T0

    clock.now = T0 + timedelta(seconds=59)
    with statements(engine) as seen:
        for _ in range(3):
            await auth.authenticate(issued.token)
    assert seen and writes(seen) == []  # within the minute: reads only, no write transaction
    assert await last_used(sessions, issued.id) == T0

    clock.now = T0 + timedelta(seconds=61)
    with statements(engine) as seen:
        await auth.authenticate(issued.token)
    assert any(s.startswith("UPDATE API_TOKENS") for s in seen)
    assert await last_used(sessions, issued.id) == T0 + timedelta(seconds=61)


async def test_a_stale_check_does_not_overwrite_a_newer_use(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Two checks of one token race: the one that read the old value writes only if the row is still stale.
    clock = Clock()
    auth = AuthService(sessions, clock=clock)
    issued = await auth.create_token("alice", namespaces=["acme"])
    await auth.authenticate(issued.token)  # T0
    async with sessions() as s:
        stale = (await s.execute(select(ApiToken).where(ApiToken.id == issued.id))).scalar_one()
    clock.now = T0 + timedelta(seconds=90)
    await auth.authenticate(issued.token)  # the other check wrote T0+90s
    clock.now = T0 + timedelta(seconds=95)
    await auth._touch(stale.id, stale.last_used_at)  # saw T0; the row no longer is older than a minute
    assert await last_used(sessions, issued.id) == T0 + timedelta(seconds=90)
