"""Pages for anonymous readers are kept for the read cache's TTL: a second view runs no SQL, a change this
process commits (an event) drops them at once, a change elsewhere (here: a row edited behind the daemon's
back) shows once the TTL passes, and nothing is kept for a reader with a token (header or cookie)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, update

from registry.api.keys import ENGINE, SESSIONS
from registry.db.models import Model
from registry.settings import Settings
from registry.web.page_cache import PAGE_CACHE
from registry.web.session import COOKIE
from tests.registry.api import helpers
from tests.registry.web.conftest import SHARD, Site, site_settings, started


@pytest.fixture
async def cached_site(settings: Settings) -> AsyncIterator[Site]:
    async for s in started(site_settings(settings, read_cache_ttl_s=300)):
        yield s


@contextmanager
def statements(site: Site) -> Iterator[list[str]]:
    seen: list[str] = []
    target = site.client.app[ENGINE].sync_engine

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(target, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", record)


async def test_a_second_anonymous_view_runs_no_sql_and_a_commit_here_refreshes(cached_site: Site) -> None:
    site = cached_site
    await site.publish()
    status, first = await site.page("/ui/models/acme/tiny")
    assert status == 200 and "1.0.0" in first
    with statements(site) as seen:
        status, again = await site.page("/ui/models/acme/tiny")
    assert status == 200 and again == first and seen == []
    await helpers.upload_and_publish(
        site.client,
        site.alice,
        "acme/tiny",
        [(SHARD[0], b"other bytes")],
        manifest_extra={"model_version": "2.0.0"},
    )  # events committed in this process: the kept pages are dropped
    status, fresh = await site.page("/ui/models/acme/tiny")
    assert status == 200 and "2.0.0" in fresh


async def test_readers_with_a_token_are_never_served_a_kept_page(cached_site: Site) -> None:
    site = cached_site
    await site.publish()
    await site.page("/ui/models")
    for kw in ({"headers": helpers.bearer(site.alice)}, {"headers": {"Cookie": f"{COOKIE}={site.alice}"}}):
        with statements(site) as seen:
            status, _ = await site.page("/ui/models", **kw)
        assert status == 200 and seen, kw  # rendered afresh


async def test_a_change_made_elsewhere_shows_after_the_ttl(cached_site: Site) -> None:
    site = cached_site
    await site.publish()
    status, before = await site.page("/ui/models")
    assert status == 200 and "acme" in before
    async with site.client.app[SESSIONS]() as s, s.begin():  # another daemon's write: no event here
        await s.execute(update(Model).values(name="renamed"))
    assert (await site.page("/ui/models"))[1] == before  # within the TTL
    cache = site.client.app[PAGE_CACHE]
    cache._clock = lambda: float("inf")  # the TTL has passed
    assert "renamed" in (await site.page("/ui/models"))[1]


async def test_no_ttl_no_cache(site: Site, settings: Settings) -> None:
    assert site.client.app[PAGE_CACHE].config.ttl_s == settings.server.read_cache_ttl_s
    off = site.client.app[PAGE_CACHE]
    off.config = type(off.config)(ttl_s=0, max_entries=off.config.max_entries)
    await site.publish()
    await site.page("/ui/models")
    with statements(site) as seen:
        await site.page("/ui/models")
    assert seen
