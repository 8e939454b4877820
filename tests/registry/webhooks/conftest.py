"""An app on a fresh database (no job worker: the tests run the dispatcher and each attempt themselves), with
a namespace admin of ``acme`` and a publisher in it, and the receiver fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.api.webhooks_api import WEBHOOKS
from registry.app.daemon import build_app
from registry.settings import Settings
from registry.webhooks.service import WebhookService
from tests.registry.api import helpers
from tests.registry.webhooks.receiver import receiver  # noqa: F401  # the fixture

QUICK = {
    "timeout_s": 1.0,
    "max_attempts": 3,
    "backoff_base_s": 2.0,
    "backoff_max_s": 60.0,
    "disable_after_failures": 5,
    "secret_grace_s": 600.0,
}


@dataclass
class Hooks:
    client: TestClient
    admin: str  # admin scope for acme only
    alice: str  # publishes in acme
    svc: WebhookService

    async def call(
        self, method: str, path: str, *, token: str | None = None, status: int = 200, **kw: Any
    ) -> Any:
        tok = self.admin if token is None else token
        r = await self.client.request(method, path, headers=helpers.bearer(tok) if tok else {}, **kw)
        assert r.status == status, (r.status, await r.text())
        return await r.json()

    async def create(self, url: str, status: int = 201, **body: Any) -> Any:
        return await self.call(
            "POST", "/v1/namespaces/acme/webhooks", json={"url": url, **body}, status=status
        )


def tuned(settings: Settings, workers: int = 0, **webhooks: Any) -> Settings:
    return settings.model_copy(
        update={
            "jobs": settings.jobs.model_copy(update={"workers": workers}),
            "webhooks": settings.webhooks.model_copy(update={**QUICK, **webhooks}),
            "validation": settings.validation.model_copy(update={"auto_validate": False}),
        }
    )


@pytest.fixture
async def hooks(settings: Settings) -> AsyncIterator[Hooks]:
    app = build_app(tuned(settings))
    async with TestClient(TestServer(app)) as client:
        admin = await helpers.token(app, "carol", ["acme"], scopes=("admin",))
        alice = await helpers.token(app, "alice", ["acme"])
        yield Hooks(client, admin, alice, app[WEBHOOKS])
