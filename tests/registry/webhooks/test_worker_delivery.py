"""The whole path in a running daemon: the periodic ``webhook-dispatch`` job and the ``webhook-deliver`` jobs on
the job worker deliver a published pack's events, retrying through the queue after a failure."""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from standardwebhooks import Webhook

from registry.api.keys import SESSIONS
from registry.app.daemon import build_app
from registry.db.webhooks import DeliveryStatus, WebhookDelivery
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.webhooks.conftest import tuned
from tests.registry.webhooks.receiver import Receiver

SHARD = ("model-00001-of-00001.safetensors", b"0123456789abcdef")


async def test_the_worker_delivers_and_retries_through_the_queue(
    settings: Settings, receiver: Receiver
) -> None:
    app = build_app(
        tuned(settings, workers=2, dispatch_interval_s=0.2, backoff_base_s=0.2, backoff_max_s=0.5)
    )
    receiver.script = [500]  # the first request fails; its retry (and everything after) succeeds
    async with TestClient(TestServer(app)) as client:
        admin = await helpers.token(app, "carol", ["acme"], scopes=("admin",))
        alice = await helpers.token(app, "alice", ["acme"])
        r = await client.post(
            "/v1/namespaces/acme/webhooks",
            json={"url": receiver.url(), "events": ["pack.published", "pack.available", "pointer.moved"]},
            headers=helpers.bearer(admin),
        )
        assert r.status == 201, await r.text()
        secret = (await r.json())["secret"]
        out = await helpers.upload_and_publish(client, alice, "acme/tiny", [SHARD])
        got = await receiver.wait_for(4, timeout=60)
        docs = [Webhook(secret).verify(g.body, g.headers) for g in got]
        assert {d["type"] for d in docs} == {"pack.published", "pack.available", "pointer.moved"}
        assert all(d["data"]["pack"] == out["cid"] for d in docs)
        ids = [g.headers["webhook-id"] for g in got]
        assert len(set(ids)) == 3  # one of them twice: the failed attempt and its retry

        async def delivered() -> list[WebhookDelivery]:
            while True:  # the last attempt is recorded just after its answer: poll, under the deadline below
                async with app[SESSIONS]() as s:
                    rows = list((await s.execute(select(WebhookDelivery))).scalars())
                if len(rows) == 3 and all(d.status == DeliveryStatus.DELIVERED for d in rows):
                    return rows
                await asyncio.sleep(0.05)

        rows = await asyncio.wait_for(delivered(), 30)
        assert sorted(d.attempts for d in rows) == [1, 1, 2]
        retried = next(d for d in rows if d.attempts == 2)
        assert ids.count(retried.message_id) == 2 and json.loads(retried.body)["type"] in {
            d["type"] for d in docs
        }
