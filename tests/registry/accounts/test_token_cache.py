"""#17 item 1: the principal cache. A cached token costs no database statement; a revocation through the
same service applies at once (also to a check that read the row before it); one made elsewhere (another
daemon on the same database) applies within ``cache_ttl_s``; the cache is bounded; 0 turns it off."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from registry.accounts.auth import LAST_USED_GRANULARITY, AuthService, IssuedToken
from registry.accounts.principal import Principal
from registry.db.base import utcnow
from registry.db.models import ApiToken
from registry.errors import Unauthorized
from tests.registry.accounts.test_token_last_used import T0, Clock, last_used, statements


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def revoke_elsewhere(sessions: async_sessionmaker[AsyncSession], token_id: int) -> None:
    """What another daemon's revoke writes to the shared database."""
    async with sessions() as s, s.begin():
        await s.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=utcnow()))


async def admin_and_alice(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[AuthService, Principal, IssuedToken]:
    """A service caching for 300 s, an admin's principal, and a token of alice's (not yet checked)."""
    auth = AuthService(sessions, cache_ttl_s=300)
    admin = await auth.authenticate((await auth.create_token("root", scopes=["admin"])).token)
    return auth, admin, await auth.create_token("alice", namespaces=["acme"])


async def test_a_cached_token_costs_no_statement(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    auth = AuthService(sessions, cache_ttl_s=5)
    issued = await auth.create_token("alice", namespaces=["acme"])
    first = await auth.authenticate(issued.token)
    with statements(engine) as seen:
        again = [await auth.authenticate(issued.token) for _ in range(5)]
    assert seen == [] and all(p == first for p in again)


async def test_a_revocation_elsewhere_applies_within_the_ttl(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    mono = Monotonic()
    auth = AuthService(sessions, cache_ttl_s=5, monotonic=mono)
    issued = await auth.create_token("alice", namespaces=["acme"])
    await auth.authenticate(issued.token)
    await revoke_elsewhere(sessions, issued.id)
    mono.now += 4.9
    await auth.authenticate(issued.token)  # within the bound: the cached principal
    mono.now += 0.2
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(issued.token)


async def test_a_revocation_here_applies_at_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    auth, admin, issued = await admin_and_alice(sessions)
    await auth.authenticate(issued.token)
    await auth.revoke(admin, issued.id)
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(issued.token)


async def test_a_check_that_read_before_a_revocation_is_not_cached(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    auth, admin, issued = await admin_and_alice(sessions)
    real_touch = auth._touch

    async def revoked_meanwhile(token_id: int, last_used_at: Any) -> Any:
        # runs after the check read the (live) row and before it caches it
        if token_id == issued.id:
            await auth.revoke(admin, issued.id)
        return await real_touch(token_id, last_used_at)

    monkeypatch.setattr(auth, "_touch", revoked_meanwhile)
    await auth.authenticate(issued.token)  # it read the row before the revocation: let through once
    monkeypatch.setattr(auth, "_touch", real_touch)
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(issued.token)


async def test_ttl_zero_reads_every_time(sessions: async_sessionmaker[AsyncSession]) -> None:
    auth = AuthService(sessions, cache_ttl_s=0)
    issued = await auth.create_token("alice", namespaces=["acme"])
    await auth.authenticate(issued.token)
    await revoke_elsewhere(sessions, issued.id)
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(issued.token)


async def test_the_cache_is_bounded(sessions: async_sessionmaker[AsyncSession]) -> None:
    mono = Monotonic()
    auth = AuthService(sessions, cache_ttl_s=300, cache_entries=2, monotonic=mono)
    issued = [await auth.create_token("alice", namespaces=["acme"]) for _ in range(3)]
    for t in issued:
        await auth.authenticate(t.token)
    await revoke_elsewhere(sessions, issued[0].id)  # the oldest entry was evicted: read again
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(issued[0].token)
    await revoke_elsewhere(sessions, issued[2].id)  # the newest is still cached
    await auth.authenticate(issued[2].token)


async def test_last_used_is_still_recorded_once_a_minute(sessions: async_sessionmaker[AsyncSession]) -> None:
    clock, mono = Clock(), Monotonic()
    auth = AuthService(sessions, clock=clock, cache_ttl_s=300, monotonic=mono)
    issued = await auth.create_token("alice", namespaces=["acme"])
    await auth.authenticate(issued.token)
    assert await last_used(sessions, issued.id) == T0
    clock.now = T0 + LAST_USED_GRANULARITY - timedelta(seconds=1)
    await auth.authenticate(issued.token)  # cached, within the minute: nothing written
    assert await last_used(sessions, issued.id) == T0
    clock.now = T0 + LAST_USED_GRANULARITY + timedelta(seconds=1)
    await auth.authenticate(issued.token)  # cached, but the minute has passed
    assert await last_used(sessions, issued.id) == clock.now


async def test_checks_that_miss_together_share_one_read(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    mono = Monotonic()
    auth = AuthService(sessions, cache_ttl_s=5, monotonic=mono)
    issued = await auth.create_token("alice", namespaces=["acme"])
    first = await auth.authenticate(issued.token)
    mono.now += 6  # expired: the next checks all miss at once
    with statements(engine) as seen:
        many = await asyncio.gather(*(auth.authenticate(issued.token) for _ in range(20)))
    assert all(p == first for p in many)
    assert len([s for s in seen if "FROM API_TOKENS" in s]) == 1, seen
    await revoke_elsewhere(sessions, issued.id)
    mono.now += 6
    refused = await asyncio.gather(
        *(auth.authenticate(issued.token) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(e, Unauthorized) and "revoked" in e.message for e in refused)


async def test_a_check_after_a_revocation_here_does_not_join_an_earlier_read(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    auth, admin, issued = await admin_and_alice(sessions)
    real_touch = auth._touch
    read_done, revoked = asyncio.Event(), asyncio.Event()

    async def held(token_id: int, last_used_at: Any) -> Any:
        if token_id == issued.id:  # the row was read (live); hold the lookup until the revocation
            read_done.set()
            await revoked.wait()
        return await real_touch(token_id, last_used_at)

    monkeypatch.setattr(auth, "_touch", held)
    early = asyncio.ensure_future(auth.authenticate(issued.token))
    await asyncio.wait_for(read_done.wait(), 30)
    await auth.revoke(admin, issued.id)
    late = asyncio.ensure_future(auth.authenticate(issued.token))  # after the revocation
    revoked.set()
    assert (await early).token_id == issued.id  # began before it: let through once, as before
    with pytest.raises(Unauthorized, match="revoked"):
        await late
