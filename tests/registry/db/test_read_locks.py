"""Reads take no write lock: on SQLite they begin DEFERRED, so they proceed while a writer holds its lock.

Another connection holds a write transaction open (on SQLite ``BEGIN IMMEDIATE``, the write lock) while
anonymous reads and token checks run; each must answer at once, not wait out the busy timeout.
"""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from registry.api.keys import ENGINE
from registry.app.daemon import build_app
from registry.db.models import Publisher
from registry.settings import Settings
from tests.registry.api import helpers

READS = (
    "/v1/models",
    "/v1/models?namespace=acme",
    "/v1/keys",
    "/v1/namespaces/acme/policy",
    "/v1/nodes",
    "/v1/replication/status",
    "/metrics",
    "/v1/models/acme/m/packs",
    "/v1/models/acme/m/history",
)
DEADLINE_S = 10.0  # far below the 30 s SQLite busy timeout a locked read would wait


async def test_reads_proceed_while_a_write_transaction_is_open(settings: Settings) -> None:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        tok = await helpers.token(app, "alice", ["acme"])
        data = helpers.shard_bytes(1000, seed=3)
        assert (await helpers.upload(client, tok, data)).status in (200, 201)
        cid = helpers.cid_of(data)
        assert (await client.get("/v1/whoami", headers=helpers.bearer(tok))).status == 200  # last_used set
        async with app[ENGINE].connect() as writer:
            await writer.begin()
            await writer.execute(update(Publisher).where(Publisher.name == "alice").values(name="alice"))
            for path in (*READS, f"/v1/blobs/{cid}"):
                r = await asyncio.wait_for(client.get(path), DEADLINE_S)
                assert r.status in (200, 404), (path, r.status, await r.text())
            for path in ("/v1/whoami", "/v1/tokens"):
                r = await asyncio.wait_for(client.get(path, headers=helpers.bearer(tok)), DEADLINE_S)
                assert r.status == 200, (path, r.status, await r.text())
            await writer.rollback()
