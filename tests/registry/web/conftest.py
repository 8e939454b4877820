"""The daemon's app on a fresh database per test (SQLite and Postgres), as the pages' tests use it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer

from registry.app.daemon import build_app
from registry.settings import Settings
from tests.registry.api import helpers

SHARD = ("model-00001-of-00001.safetensors", helpers.shard_bytes(3000, seed=5))
HOSTILE = '<script>alert("x")</script>'
HOSTILE_IMG = "<img src=x onerror=alert(1)>"


@dataclass
class Site:
    client: TestClient
    admin: str
    alice: str

    async def page(self, path: str, **kw: Any) -> tuple[int, str]:
        r = await self.client.get(path, allow_redirects=False, **kw)
        return r.status, await r.text()

    async def publish(self, name: str = "acme/tiny", **body: Any) -> dict[str, Any]:
        return await helpers.upload_and_publish(self.client, self.alice, name, [SHARD], **body)


def site_settings(settings: Settings, **server: Any) -> Settings:
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update=server),
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
        }
    )


async def started(settings: Settings) -> AsyncIterator[Site]:
    app = build_app(settings)
    # no cookie jar: the tests send and read every cookie themselves
    async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client:
        admin = await helpers.token(app, "root", scopes=("admin",))
        alice = await helpers.token(app, "alice", ["acme"])
        yield Site(client, admin, alice)


@pytest.fixture
async def site(settings: Settings) -> AsyncIterator[Site]:
    async for s in started(site_settings(settings)):
        yield s


def text_of(html: str) -> str:
    """The page's text without tags, whitespace collapsed (what a reader sees, roughly)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden field {name} in the form"
    return m.group(1)
