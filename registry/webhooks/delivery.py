"""Turning events into deliveries, and delivering them.

The ``webhook-dispatch`` job (periodic, ``webhooks.dispatch_interval_s``) reads, for every enabled endpoint,
the outbox events after its cursor that match it (namespace, types, optional model), adds one pending
delivery per event and its ``webhook-deliver`` job, and moves the cursor, all in one transaction: nothing is
added to the transaction that wrote the event, and an event becomes a delivery exactly once. Ids of the outbox
become visible in commit order, so events up to the highest id read are final and the cursor may pass them.

A ``webhook-deliver`` job makes one attempt: a POST of the stored body with fresh ``webhook-*`` headers,
within ``webhooks.timeout_s``, redirects not followed (a 3xx is a failure), at most 1 KiB of the answer read.
A failure schedules the next attempt after an exponential backoff with jitter (a new job with ``run_after``,
committed with the result); after ``webhooks.max_attempts`` the delivery is dead. ``disable_after_failures``
failed attempts in a row, across deliveries, disable the endpoint with the reason stored. No event is
written for any of this.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry import metrics
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.events import Event
from registry.db.models import Namespace
from registry.db.webhooks import EXCERPT_LEN, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from registry.events import store
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import ClaimedJob, JobQueue
from registry.jobs.sql import backoff_delay
from registry.trust.errors import KeySealError
from registry.webhooks import signing
from registry.webhooks.config import TEST_EVENT_TYPE, WebhookConfig
from registry.webhooks.endpoints import DeliveryView, signing_keys

log = logging.getLogger(__name__)

EXCERPT_BYTES = 1024
ERROR_MAX = 300
PRUNE_EVERY_S = 600.0  # the delivery log is pruned by a dispatch job at most this often (per daemon)
JOB_ATTEMPTS = 3  # the queue retries a deliver job only when its handler crashed (the database was away)
DONE = (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD)


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status: int | None = None
    latency_ms: int | None = None
    excerpt: str | None = None
    error: str | None = None


def event_body(e: Event) -> str:
    """The Standard Webhooks envelope: ``{"type", "timestamp", "data"}``, ``data`` the event as the feed
    shows it."""
    doc = store.event_json(e)
    return json.dumps({"type": e.type, "timestamp": doc["created_at"], "data": doc}, separators=(",", ":"))


async def _excerpt(resp: aiohttp.ClientResponse) -> str:
    buf = b""
    while len(buf) < EXCERPT_BYTES:
        chunk = await resp.content.read(EXCERPT_BYTES - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf.decode("utf-8", "replace")[:EXCERPT_LEN]


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> Attempt:
    """One POST; never follows a redirect, never reads more than 1 KiB of the answer."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            async with http.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                latency = int((time.monotonic() - started) * 1000)
                excerpt = await _excerpt(resp)
                resp.close()  # never drain (or reuse a connection with) an answer larger than the excerpt
    except TimeoutError:
        return Attempt(False, latency_ms=int(timeout_s * 1000), error=f"timed out after {timeout_s:g} s")
    except (aiohttp.ClientError, OSError, ValueError) as e:
        return Attempt(False, error=f"request failed: {type(e).__name__}: {e}"[:ERROR_MAX])
    status = resp.status
    if 200 <= status < 300:
        return Attempt(True, status, latency, excerpt)
    if 300 <= status < 400:
        where = (resp.headers.get("Location") or "")[:200]
        error = f"HTTP {status} redirect to {where!r} not followed"
        return Attempt(False, status, latency, excerpt, error[:ERROR_MAX])
    return Attempt(False, status, latency, excerpt, f"HTTP {status}")


def _apply(d: WebhookDelivery, attempt: Attempt) -> None:
    d.last_status_code, d.latency_ms = attempt.status, attempt.latency_ms
    d.response_excerpt, d.error = attempt.excerpt, attempt.error


class WebhookDeliverer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        kek: bytes,
        queue: JobQueue,
        config: WebhookConfig = WebhookConfig(),
    ) -> None:
        self._sessions = sessions
        self._kek = kek
        self._queue = queue
        self.config = config
        self._http: aiohttp.ClientSession | None = None
        self._pruned_at = float("-inf")

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64),
                headers={"User-Agent": "modelpack-webhooks"},
                trust_env=False,
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _enqueue(
        self, s: AsyncSession, delivery_id: int, attempt: int, *, after_s: float = 0.0
    ) -> None:
        """The job of one attempt (its own dedupe key: a retry never merges into an earlier attempt's job)."""
        await self._queue.enqueue(
            JobKind.WEBHOOK_DELIVER,
            {"delivery": delivery_id},
            dedupe_key=JobKind.WEBHOOK_DELIVER.key(f"{delivery_id}:{attempt}"),
            run_after=utcnow() + timedelta(seconds=after_s),
            max_attempts=JOB_ATTEMPTS,
            session=s,
        )

    # -- dispatch ---------------------------------------------------------------------------------------
    async def handle_dispatch(self, job: ClaimedJob) -> None:
        """The ``webhook-dispatch`` job: new events become deliveries; old finished deliveries are deleted."""
        made = await self.dispatch()
        if made:
            log.info("queued %d webhook deliveries", made)
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            await self.prune()

    async def dispatch(self) -> int:
        """Deliveries for every enabled endpoint's new matching events; returns how many were added."""
        async with readonly_session(self._sessions) as s:
            hi = await store.last_id(s)
            ids = list(
                (
                    await s.execute(
                        select(WebhookEndpoint.id).where(
                            WebhookEndpoint.enabled.is_(True), WebhookEndpoint.last_event_id < hi
                        )
                    )
                ).scalars()
            )
        made = 0
        for endpoint_id in ids:
            made += await self._dispatch_endpoint(endpoint_id, hi)
        return made

    async def _dispatch_endpoint(self, endpoint_id: int, hi: int) -> int:
        made = 0
        while True:
            async with self._sessions() as s, s.begin():
                row = (
                    await s.execute(
                        select(WebhookEndpoint, Namespace.name)
                        .join(Namespace, Namespace.id == WebhookEndpoint.namespace_id)
                        .where(WebhookEndpoint.id == endpoint_id)
                        .with_for_update(of=WebhookEndpoint)
                    )
                ).one_or_none()
                if row is None or not row[0].enabled or row[0].last_event_id >= hi:
                    return made
                ep, ns = row
                q = select(Event).where(
                    Event.id > ep.last_event_id,
                    Event.id <= hi,
                    Event.namespace == ns,
                    Event.type.in_(list(ep.event_types)),
                )
                if ep.model is not None:
                    q = q.where(Event.model == f"{ns}/{ep.model}")
                batch = self.config.dispatch_batch
                events = list((await s.execute(q.order_by(Event.id).limit(batch))).scalars())
                rows = [
                    WebhookDelivery(
                        endpoint_id=ep.id,
                        event_id=e.id,
                        event_type=e.type,
                        message_id=f"evt_{e.id}",
                        body=event_body(e),
                        status=DeliveryStatus.PENDING,
                        attempts=0,
                        next_attempt_at=utcnow(),
                    )
                    for e in events
                ]
                s.add_all(rows)
                await s.flush()
                for d in rows:
                    await self._enqueue(s, d.id, 0)
                full = len(events) == batch
                ep.last_event_id = events[-1].id if full else hi
                made += len(rows)
            if not full:
                return made

    async def prune(self) -> int:
        """Delete finished deliveries older than the log's retention; returns how many."""
        before = utcnow() - timedelta(seconds=self.config.log_retention_s)
        finished = or_(
            WebhookDelivery.status.in_(list(DONE)),
            (WebhookDelivery.status == DeliveryStatus.FAILED) & WebhookDelivery.next_attempt_at.is_(None),
        )
        async with self._sessions() as s, s.begin():
            result = await s.execute(
                delete(WebhookDelivery).where(finished, WebhookDelivery.updated_at < before)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    # -- delivery ---------------------------------------------------------------------------------------
    async def handle_deliver(self, job: ClaimedJob) -> None:
        """The ``webhook-deliver`` job: one attempt of one delivery (none before its next attempt is due:
        a job that ran early, e.g. a duplicate, leaves it to the attempt's own job)."""
        delivery_id = int(job.payload["delivery"])
        async with readonly_session(self._sessions) as s:
            due = (
                await s.execute(
                    select(WebhookDelivery.next_attempt_at).where(WebhookDelivery.id == delivery_id)
                )
            ).scalar_one_or_none()
        if due is not None and due > utcnow() + timedelta(seconds=1):
            return
        await self.deliver(delivery_id)

    async def deliver(self, delivery_id: int) -> DeliveryStatus | None:
        """One attempt; the delivery's status after it (None: the delivery or its endpoint is gone)."""
        async with readonly_session(self._sessions) as s:
            row = (
                await s.execute(
                    select(WebhookDelivery, WebhookEndpoint)
                    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                    .where(WebhookDelivery.id == delivery_id)
                )
            ).one_or_none()
            if row is None:
                return None
            d, ep = row
            s.expunge_all()
        if d.status in DONE:
            return d.status
        if not ep.enabled:
            reason = f"not sent: the endpoint is disabled ({(ep.disabled_reason or '')[:200]})"
            return await self._record(delivery_id, Attempt(False, error=reason), final=True)
        try:
            keys = signing_keys(ep, self._kek)
        except KeySealError:
            error = "not sent: the endpoint's secret does not open (another key-encryption key?); rotate it"
            return await self._record(delivery_id, Attempt(False, error=error), final=True)
        attempt = await self._send(ep.url, d.message_id, d.body, keys)
        return await self._record(delivery_id, attempt)

    async def _send(self, url: str, message_id: str, body: str, keys: list[bytes]) -> Attempt:
        data = body.encode()
        headers = signing.headers(keys, message_id, int(time.time()), data)
        return await post(self._session(), url, data, headers, self.config.timeout_s)

    async def _record(
        self, delivery_id: int, attempt: Attempt, *, final: bool = False
    ) -> DeliveryStatus | None:
        cfg = self.config
        async with self._sessions() as s, s.begin():
            d = await s.get(WebhookDelivery, delivery_id)
            if d is None:
                return None
            ep = (
                await s.execute(
                    select(WebhookEndpoint).where(WebhookEndpoint.id == d.endpoint_id).with_for_update()
                )
            ).scalar_one_or_none()
            if ep is None:
                return None
            if d.status in DONE:  # a duplicate attempt finished it meanwhile
                return d.status
            sent = not final
            if sent:
                d.attempts += 1
            _apply(d, attempt)
            if attempt.ok:
                d.status, d.next_attempt_at = DeliveryStatus.DELIVERED, None
                ep.consecutive_failures = 0
                result = "delivered"
            else:
                if sent:
                    ep.consecutive_failures += 1
                disable = ep.enabled and ep.consecutive_failures >= cfg.disable_after_failures
                if disable:
                    ep.enabled, ep.disabled_at = False, utcnow()
                    ep.disabled_reason = (
                        f"disabled after {ep.consecutive_failures} failed delivery attempts in a row; "
                        f"the last: {attempt.error or 'failed'}"
                    )[:1024]
                if final or disable or d.attempts >= cfg.max_attempts:
                    d.status, d.next_attempt_at = DeliveryStatus.DEAD, None
                    result = "dead"
                else:
                    delay = backoff_delay(d.attempts, cfg.backoff_base_s, cfg.backoff_max_s)
                    d.status = DeliveryStatus.FAILED
                    d.next_attempt_at = utcnow() + timedelta(seconds=delay)
                    await self._enqueue(s, d.id, d.attempts, after_s=delay)
                    result = "failed"
            status = d.status
        metrics.record_webhook_delivery(result)
        return status

    # -- a test ping ----------------------------------------------------------------------------------
    async def send_test(self, namespace: str, ep: WebhookEndpoint) -> DeliveryView:
        """Send a ``webhook.test`` message now (also to a disabled endpoint) and log it; it is not retried
        and does not count toward disabling the endpoint."""
        doc = {
            "type": TEST_EVENT_TYPE,
            "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
            "data": {"webhook": ep.id, "namespace": namespace, "url": ep.url},
        }
        body = json.dumps(doc, separators=(",", ":"))
        async with self._sessions() as s, s.begin():
            d = WebhookDelivery(
                endpoint_id=ep.id,
                event_id=None,
                event_type=TEST_EVENT_TYPE,
                message_id=f"msg_test_{secrets.token_hex(8)}",
                body=body,
                status=DeliveryStatus.PENDING,
                attempts=0,
            )
            s.add(d)
            await s.flush()
            delivery_id, message_id = d.id, d.message_id
        try:
            attempt = await self._send(ep.url, message_id, body, signing_keys(ep, self._kek))
        except KeySealError:
            attempt = Attempt(False, error="not sent: the endpoint's secret does not open; rotate it")
        metrics.record_webhook_delivery("delivered" if attempt.ok else "failed")
        async with self._sessions() as s, s.begin():
            row = await s.get(WebhookDelivery, delivery_id)
            target = d if row is None else row  # None: the endpoint was removed meanwhile
            _apply(target, attempt)
            target.attempts = 1
            target.status = DeliveryStatus.DELIVERED if attempt.ok else DeliveryStatus.FAILED
            await s.flush()
            return DeliveryView.of(target)

    async def enqueue_redelivery(self, s: AsyncSession, delivery_id: int) -> None:
        await self._enqueue(s, delivery_id, 0)
