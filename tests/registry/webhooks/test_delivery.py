"""Deliveries of real events: a published pack's events reach a real receiver signed per Standard Webhooks,
exactly once per matching endpoint; retries back off then succeed; dead after N attempts; a run of failures
disables the endpoint (reason kept); redirects are not followed; a hanging or huge answer is bounded;
redelivery sends the same message again. The tests run the dispatcher and each attempt themselves."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

from sqlalchemy import select
from standardwebhooks import Webhook

from registry.api.keys import SESSIONS
from registry.db.base import utcnow
from registry.db.jobs import Job
from registry.db.webhooks import DeliveryStatus, WebhookDelivery
from registry.jobs.kinds import JobKind
from registry.metrics import REGISTRY
from tests.registry.api import helpers
from tests.registry.webhooks.conftest import Hooks
from tests.registry.webhooks.receiver import HUGE_BYTES, Receiver

BASE = "/v1/namespaces/acme/webhooks"
SHARD = ("model-00001-of-00001.safetensors", b"0123456789abcdef")


async def _deliveries(h: Hooks, endpoint: int | None = None) -> list[WebhookDelivery]:
    async with h.client.app[SESSIONS]() as s:
        q = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if endpoint is not None:
            q = q.where(WebhookDelivery.endpoint_id == endpoint)
        return list((await s.execute(q)).scalars())


async def _one_delivery(h: Hooks, receiver: Receiver, **body: object) -> tuple[int, int, str]:
    """An endpoint for pointer.moved, a publish, the dispatch: (endpoint id, delivery id, secret)."""
    out = await h.create(receiver.url(), events=["pointer.moved"], **body)
    await helpers.upload_and_publish(h.client, h.alice, "acme/tiny", [SHARD])
    assert await h.svc.deliverer.dispatch() == 1
    (d,) = await _deliveries(h, out["webhook"]["id"])
    return out["webhook"]["id"], d.id, out["secret"]


async def test_published_events_reach_the_receiver_signed_once_per_matching_endpoint(
    hooks: Hooks, receiver: Receiver
) -> None:
    a = await hooks.create(receiver.url("/a"), events=["pack.published", "pointer.moved"])
    tiny = await hooks.create(receiver.url("/tiny"), events=["pack.available"], model="tiny")
    other = await hooks.create(receiver.url("/other"), model="other")
    await hooks.call("POST", f"{BASE}/{other['webhook']['id']}/test")  # a ping is not an event
    out = await helpers.upload_and_publish(hooks.client, hooks.alice, "acme/tiny", [SHARD])
    feed = {e["type"]: e for e in (await (await hooks.client.get("/v1/events")).json())["items"]}
    assert await hooks.svc.deliverer.dispatch() == 3
    assert await hooks.svc.deliverer.dispatch() == 0  # every event becomes a delivery once
    made = await _deliveries(hooks)
    by_endpoint = {(d.endpoint_id, d.event_type) for d in made if d.event_id is not None}
    assert by_endpoint == {
        (a["webhook"]["id"], "pack.published"),
        (a["webhook"]["id"], "pointer.moved"),
        (tiny["webhook"]["id"], "pack.available"),
    }
    jobs = await _jobs(hooks)
    assert sorted(j.payload["delivery"] for j in jobs) == sorted(d.id for d in made if d.event_id)
    for d in made:
        if d.event_id is not None:
            assert await hooks.svc.deliverer.deliver(d.id) == DeliveryStatus.DELIVERED
    got = [r for r in await receiver.wait_for(4) if r.path != "/other"]
    secrets = {"/a": a["secret"], "/tiny": tiny["secret"]}
    for r in got:
        doc = Webhook(secrets[r.path]).verify(r.body, r.headers)
        event = feed[doc["type"]]
        assert doc == {"type": event["type"], "timestamp": event["created_at"], "data": event}
        assert r.headers["webhook-id"] == f"evt_{event['id']}"
    assert sorted((r.path, json.loads(r.body)["type"]) for r in got) == [
        ("/a", "pack.published"), ("/a", "pointer.moved"), ("/tiny", "pack.available"),
    ]  # fmt: skip
    assert json.loads(got[0].body)["data"]["pack"] == out["cid"]
    log = await hooks.call("GET", f"{BASE}/{a['webhook']['id']}/deliveries")
    assert {d["status"] for d in log["items"]} == {"delivered"} and len(log["items"]) == 2
    hook = await hooks.call("GET", f"{BASE}/{a['webhook']['id']}")
    assert hook["last_event_id"] >= max(e["id"] for e in feed.values())


def _counted(result: str) -> float:
    value = REGISTRY.get_sample_value("modelpack_webhook_deliveries_total", {"result": result})
    return value or 0.0


async def _jobs(h: Hooks) -> list[Job]:
    async with h.client.app[SESSIONS]() as s:
        q = select(Job).where(Job.kind == JobKind.WEBHOOK_DELIVER, Job.state == "queued").order_by(Job.id)
        return list((await s.execute(q)).scalars())


async def test_failures_back_off_then_succeed(hooks: Hooks, receiver: Receiver) -> None:
    receiver.script = [500, 503, 200]
    hook_id, did, _ = await _one_delivery(hooks, receiver)
    deliver = hooks.svc.deliverer.deliver
    for attempt, code in ((1, 500), (2, 503)):
        before = utcnow()
        assert await deliver(did) == DeliveryStatus.FAILED
        (d,) = await _deliveries(hooks, hook_id)
        assert (d.attempts, d.last_status_code, d.error) == (attempt, code, f"HTTP {code}")
        cap = min(60.0, 2.0 * 2 ** (attempt - 1))  # base 2 s, doubling, full jitter from base/2
        assert d.next_attempt_at is not None
        assert before + timedelta(seconds=1.0) <= d.next_attempt_at <= utcnow() + timedelta(seconds=cap)
        assert d.response_excerpt is not None and len(d.response_excerpt) <= 1024
        retry = [j for j in await _jobs(hooks) if j.dedupe_key == f"webhook-deliver:{did}:{attempt}"]
        assert len(retry) == 1 and abs((retry[0].run_after - d.next_attempt_at).total_seconds()) < 1
    assert await deliver(did) == DeliveryStatus.DELIVERED
    (d,) = await _deliveries(hooks, hook_id)
    assert (d.attempts, d.last_status_code, d.next_attempt_at, d.error) == (3, 200, None, None)
    assert len(receiver.requests) == 3 and len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    hook = await hooks.call("GET", f"{BASE}/{hook_id}")
    assert hook["consecutive_failures"] == 0 and hook["enabled"]


async def test_dead_after_the_last_attempt(hooks: Hooks, receiver: Receiver) -> None:
    receiver.script = [500, 500, 500, 200]
    hook_id, did, _ = await _one_delivery(hooks, receiver)
    before = {r: _counted(r) for r in ("failed", "dead", "delivered")}
    statuses = [await hooks.svc.deliverer.deliver(did) for _ in range(3)]
    assert statuses == [DeliveryStatus.FAILED, DeliveryStatus.FAILED, DeliveryStatus.DEAD]
    counted = {r: _counted(r) - n for r, n in before.items()}
    assert counted == {"failed": 2, "dead": 1, "delivered": 0}  # modelpack_webhook_deliveries_total
    assert await hooks.svc.deliverer.deliver(did) == DeliveryStatus.DEAD  # nothing more is sent
    assert len(receiver.requests) == 3
    (d,) = await _deliveries(hooks, hook_id)
    assert (d.attempts, d.next_attempt_at) == (3, None)
    log = await hooks.call("GET", f"{BASE}/{hook_id}/deliveries")
    assert log["items"][0]["status"] == "dead" and log["items"][0]["last_status_code"] == 500


async def test_a_run_of_failures_disables_the_endpoint_until_enabled(
    hooks: Hooks, receiver: Receiver
) -> None:
    d = hooks.svc.deliverer
    d.config = dataclasses.replace(d.config, disable_after_failures=2)
    receiver.script = ["redirect", 500]
    hook_id, did, _ = await _one_delivery(hooks, receiver)
    assert await d.deliver(did) == DeliveryStatus.FAILED
    assert await d.deliver(did) == DeliveryStatus.DEAD
    hook = await hooks.call("GET", f"{BASE}/{hook_id}")
    assert not hook["enabled"] and hook["consecutive_failures"] == 2
    assert (
        "2 failed delivery attempts in a row" in hook["disabled_reason"]
        and "HTTP 500" in hook["disabled_reason"]
    )
    await helpers.upload_and_publish(hooks.client, hooks.alice, "acme/tiny", [("b.safetensors", b"other")])
    assert await d.dispatch() == 0  # a disabled endpoint gets no deliveries
    r = await hooks.client.post(
        f"{BASE}/{hook_id}/deliveries/{did}/redeliver", headers=helpers.bearer(hooks.admin)
    )
    assert r.status == 409 and (await r.json())["error"]["code"] == "webhook_disabled"
    hook = await hooks.call("PATCH", f"{BASE}/{hook_id}", json={"enabled": True})
    assert hook["enabled"] and hook["consecutive_failures"] == 0 and hook["disabled_reason"] is None
    assert await d.dispatch() == 0  # it gets events from now on; what it missed stays in the feed
    off = await hooks.call("PATCH", f"{BASE}/{hook_id}", json={"enabled": False})
    assert not off["enabled"] and off["disabled_reason"] == "disabled by carol"
    assert len(receiver.requests) == 2


async def test_redirects_are_not_followed(hooks: Hooks, receiver: Receiver) -> None:
    receiver.script = ["redirect"]
    hook_id, did, _ = await _one_delivery(hooks, receiver)
    assert await hooks.svc.deliverer.deliver(did) == DeliveryStatus.FAILED
    (d,) = await _deliveries(hooks, hook_id)
    assert d.last_status_code == 302 and "not followed" in (d.error or "") and "/elsewhere" in (d.error or "")
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_a_hanging_receiver_times_out_and_a_huge_answer_is_cut(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.script = ["hang", "huge"]
    hook_id, did, _ = await _one_delivery(hooks, receiver)
    assert await hooks.svc.deliverer.deliver(did) == DeliveryStatus.FAILED
    (d,) = await _deliveries(hooks, hook_id)
    assert d.error == "timed out after 1 s" and d.last_status_code is None
    assert await hooks.svc.deliverer.deliver(did) == DeliveryStatus.DELIVERED
    (d,) = await _deliveries(hooks, hook_id)
    assert d.response_excerpt == "x" * 1024
    assert receiver.huge_sent < HUGE_BYTES  # the connection was dropped after the excerpt


async def test_an_unreachable_receiver_fails_and_redelivery_sends_the_same_message(
    hooks: Hooks, receiver: Receiver
) -> None:
    hook_id, did, secret = await _one_delivery(hooks, receiver)
    assert await hooks.svc.deliverer.deliver(did) == DeliveryStatus.DELIVERED
    again = await hooks.call("POST", f"{BASE}/{hook_id}/deliveries/{did}/redeliver", status=202)
    assert again["status"] == "pending" and again["id"] != did and again["attempts"] == 0
    assert [j.payload for j in await _jobs(hooks)][-1] == {"delivery": again["id"]}
    assert await hooks.svc.deliverer.deliver(again["id"]) == DeliveryStatus.DELIVERED
    first, second = await receiver.wait_for(2)
    assert first.body == second.body and first.headers["webhook-id"] == second.headers["webhook-id"]
    Webhook(secret).verify(second.body, second.headers)
    await hooks.call("POST", f"{BASE}/{hook_id}/deliveries/999999/redeliver", status=404)

    await receiver.server.close()  # type: ignore[union-attr]  # nothing listens there now
    third = await hooks.call("POST", f"{BASE}/{hook_id}/deliveries/{did}/redeliver", status=202)
    assert await hooks.svc.deliverer.deliver(third["id"]) == DeliveryStatus.FAILED
    log = await hooks.call("GET", f"{BASE}/{hook_id}/deliveries")
    assert log["items"][0]["error"].startswith("request failed") and log["items"][0]["status"] == "failed"


async def test_finished_deliveries_past_retention_are_pruned(hooks: Hooks, receiver: Receiver) -> None:
    hook_id, did, _ = await _one_delivery(hooks, receiver)
    assert await hooks.svc.deliverer.deliver(did) == DeliveryStatus.DELIVERED
    again = await hooks.call("POST", f"{BASE}/{hook_id}/deliveries/{did}/redeliver", status=202)
    assert await hooks.svc.deliverer.prune() == 0  # nothing is old yet
    async with hooks.client.app[SESSIONS]() as s, s.begin():
        for d in (await s.execute(select(WebhookDelivery))).scalars():
            d.updated_at = utcnow() - timedelta(seconds=hooks.svc.config.log_retention_s + 60)
    assert await hooks.svc.deliverer.prune() == 1  # the delivered one; the pending redelivery stays
    assert [d.id for d in await _deliveries(hooks, hook_id)] == [again["id"]]
