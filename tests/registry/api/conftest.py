"""An app on a fresh database per test, with an admin and a publisher (``alice`` in namespace ``acme``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app.daemon import build_app
from registry.settings import Settings
from tests.registry.api import helpers


@dataclass
class Registry:
    client: TestClient
    admin: str
    alice: str


@pytest.fixture
async def reg(settings: Settings) -> AsyncIterator[Registry]:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        admin = await helpers.token(app, "root", scopes=("admin",))
        alice = await helpers.token(app, "alice", ["acme"])
        yield Registry(client, admin, alice)
