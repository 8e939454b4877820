"""Registering, listing, rotating, enabling and removing webhook endpoints, and each endpoint's delivery log.

Every operation needs the admin scope for the endpoint's namespace (403 otherwise, before anything is read);
an endpoint id that is not in the path's namespace is 404. Secrets are generated here, shown once (creation
and rotation return them) and stored sealed under the key-encryption key with the endpoint id as associated
data, so a sealed secret copied onto another endpoint's row does not open there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.accounts.principal import Principal
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.models import Namespace
from registry.db.naming import namespace_named
from registry.db.webhooks import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from registry.errors import Conflict, NotFound
from registry.events import store
from registry.names import check_name
from registry.trust.errors import KeySealError
from registry.trust.sealing import open_private_key, seal_private_key
from registry.webhooks import signing
from registry.webhooks.config import WebhookConfig, check_event_types, check_url

SECRET_AAD = b"modelpack webhook secret"


class TooManyWebhooks(Conflict):
    code = "too_many_webhooks"


class WebhookDisabled(Conflict):
    code = "webhook_disabled"


def secret_aad(endpoint_id: int) -> bytes:
    return SECRET_AAD + b"\x00" + str(endpoint_id).encode()


def seal_secret(raw: bytes, kek: bytes, endpoint_id: int) -> bytes:
    return seal_private_key(raw, kek, aad=secret_aad(endpoint_id))


def signing_keys(ep: WebhookEndpoint, kek: bytes) -> list[bytes]:
    """The keys that sign a delivery now: the current secret, and the previous one during its grace.

    Raises:
        KeySealError: a secret does not open for this endpoint (another KEK, or copied from another row).
    """
    keys = [open_private_key(ep.secret, kek, aad=secret_aad(ep.id))]
    if ep.previous_secret is not None and ep.previous_secret_until and ep.previous_secret_until > utcnow():
        try:
            keys.append(open_private_key(ep.previous_secret, kek, aad=secret_aad(ep.id)))
        except KeySealError:
            pass  # the old secret only widens what verifies; the current one is what counts
    return keys


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


@dataclass(frozen=True)
class EndpointView:
    id: int
    namespace: str
    url: str
    events: list[str]
    model: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: str | None
    consecutive_failures: int
    last_event_id: int
    previous_secret_until: str | None
    created_by: str
    created_at: str

    @classmethod
    def of(cls, ep: WebhookEndpoint, namespace: str) -> EndpointView:
        grace = ep.previous_secret_until if ep.previous_secret is not None else None
        return cls(
            id=ep.id,
            namespace=namespace,
            url=ep.url,
            events=list(ep.event_types),
            model=ep.model,
            enabled=ep.enabled,
            disabled_reason=ep.disabled_reason,
            disabled_at=_iso(ep.disabled_at),
            consecutive_failures=ep.consecutive_failures,
            last_event_id=ep.last_event_id,
            previous_secret_until=_iso(grace) if grace and grace > utcnow() else None,
            created_by=ep.created_by,
            created_at=_iso(ep.created_at) or "",
        )


@dataclass(frozen=True)
class DeliveryView:
    id: int
    webhook: int
    event_id: int | None
    type: str
    message_id: str
    status: str
    attempts: int
    last_status_code: int | None
    latency_ms: int | None
    response_excerpt: str | None
    error: str | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, d: WebhookDelivery) -> DeliveryView:
        return cls(
            id=d.id,
            webhook=d.endpoint_id,
            event_id=d.event_id,
            type=d.event_type,
            message_id=d.message_id,
            status=d.status.value,
            attempts=d.attempts,
            last_status_code=d.last_status_code,
            latency_ms=d.latency_ms,
            response_excerpt=d.response_excerpt,
            error=d.error,
            next_attempt_at=_iso(d.next_attempt_at),
            created_at=_iso(d.created_at) or "",
            updated_at=_iso(d.updated_at) or "",
        )


class WebhookEndpoints:
    """The admin side: what the API's ``/v1/namespaces/{ns}/webhooks`` routes call."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], kek: bytes, config: WebhookConfig = WebhookConfig()
    ) -> None:
        self._sessions = sessions
        self._kek = kek
        self.config = config

    async def _namespace(self, s: AsyncSession, principal: Principal, namespace: str) -> Namespace:
        check_name(namespace, "namespace")
        principal.require_admin_of(namespace, "managing webhooks")
        ns = (await s.execute(select(Namespace).where(namespace_named(namespace)))).scalar_one_or_none()
        if ns is None:
            raise NotFound(f"no namespace {namespace!r}", namespace=namespace)
        return ns

    async def _endpoint(
        self, s: AsyncSession, principal: Principal, namespace: str, endpoint_id: int, *, lock: bool = False
    ) -> tuple[Namespace, WebhookEndpoint]:
        ns = await self._namespace(s, principal, namespace)
        q = select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.namespace_id == ns.id
        )
        ep = (await s.execute(q.with_for_update() if lock else q)).scalar_one_or_none()
        if ep is None:
            raise NotFound(f"namespace {namespace!r} has no webhook {endpoint_id}", webhook=endpoint_id)
        return ns, ep

    async def create(
        self,
        principal: Principal,
        namespace: str,
        *,
        url: str,
        events: list[str] | None = None,
        model: str | None = None,
    ) -> tuple[EndpointView, str]:
        """A new endpoint and its secret (``whsec_...``, shown this once). It gets events from now on.

        Raises:
            Forbidden, NotFound (no such namespace), BadRequest (URL, event type), InvalidName (model),
            TooManyWebhooks (409: ``webhooks.max_endpoints`` in the namespace).
        """
        types = check_event_types(events)
        if model is not None:
            check_name(model, "model")
        async with self._sessions() as s, s.begin():
            ns = await self._namespace(s, principal, namespace)
            check_url(url, self.config.allowed_hosts)
            count = (
                await s.execute(
                    select(func.count())
                    .select_from(WebhookEndpoint)
                    .where(WebhookEndpoint.namespace_id == ns.id)
                )
            ).scalar_one()
            if count >= self.config.max_endpoints:
                raise TooManyWebhooks(
                    f"namespace {namespace!r} has {count} webhooks, the most webhooks.max_endpoints allows",
                    namespace=namespace,
                )
            raw = signing.new_secret()
            ep = WebhookEndpoint(
                namespace_id=ns.id,
                url=url,
                event_types=types,
                model=model,
                secret=b"",  # sealed below, once the row has its id
                enabled=True,
                consecutive_failures=0,
                last_event_id=await store.last_id(s),
                created_by=principal.publisher,
            )
            s.add(ep)
            await s.flush()
            ep.secret = seal_secret(raw, self._kek, ep.id)
            await s.flush()
            return EndpointView.of(ep, ns.name), signing.secret_text(raw)

    async def list_endpoints(self, principal: Principal, namespace: str) -> list[EndpointView]:
        async with readonly_session(self._sessions) as s:
            ns = await self._namespace(s, principal, namespace)
            rows = (
                await s.execute(
                    select(WebhookEndpoint)
                    .where(WebhookEndpoint.namespace_id == ns.id)
                    .order_by(WebhookEndpoint.id)
                )
            ).scalars()
            return [EndpointView.of(ep, ns.name) for ep in rows]

    async def get(self, principal: Principal, namespace: str, endpoint_id: int) -> EndpointView:
        async with readonly_session(self._sessions) as s:
            ns, ep = await self._endpoint(s, principal, namespace, endpoint_id)
            return EndpointView.of(ep, ns.name)

    async def remove(self, principal: Principal, namespace: str, endpoint_id: int) -> EndpointView:
        """Forget the endpoint and its delivery log (queued deliveries find no row and stop)."""
        async with self._sessions() as s, s.begin():
            ns, ep = await self._endpoint(s, principal, namespace, endpoint_id, lock=True)
            view = EndpointView.of(ep, ns.name)
            await s.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id))
            await s.delete(ep)
            return view

    async def rotate(
        self, principal: Principal, namespace: str, endpoint_id: int
    ) -> tuple[EndpointView, str]:
        """A new secret (shown this once). The old one keeps signing, beside the new, for
        ``webhooks.secret_grace_s`` (0: it is replaced at once)."""
        async with self._sessions() as s, s.begin():
            ns, ep = await self._endpoint(s, principal, namespace, endpoint_id, lock=True)
            raw = signing.new_secret()
            grace = self.config.secret_grace_s
            ep.previous_secret = ep.secret if grace > 0 else None
            ep.previous_secret_until = utcnow() + timedelta(seconds=grace) if grace > 0 else None
            ep.secret = seal_secret(raw, self._kek, ep.id)
            await s.flush()
            return EndpointView.of(ep, ns.name), signing.secret_text(raw)

    async def set_enabled(
        self, principal: Principal, namespace: str, endpoint_id: int, enabled: bool
    ) -> EndpointView:
        """Enable (failure count reset; it gets events from now on: what it missed stays in the event feed)
        or disable by hand."""
        async with self._sessions() as s, s.begin():
            ns, ep = await self._endpoint(s, principal, namespace, endpoint_id, lock=True)
            if enabled and not ep.enabled:
                ep.enabled, ep.disabled_reason, ep.disabled_at = True, None, None
                ep.consecutive_failures = 0
                ep.last_event_id = max(ep.last_event_id, await store.last_id(s))
            elif not enabled and ep.enabled:
                ep.enabled, ep.disabled_at = False, utcnow()
                ep.disabled_reason = f"disabled by {principal.publisher}"
            await s.flush()
            return EndpointView.of(ep, ns.name)

    async def deliveries(
        self,
        principal: Principal,
        namespace: str,
        endpoint_id: int,
        *,
        before: int | None = None,
        limit: int = 50,
    ) -> tuple[list[DeliveryView], int | None]:
        """The endpoint's deliveries, newest first, and the ``before`` of the next page (None: last page)."""
        async with readonly_session(self._sessions) as s:
            _, ep = await self._endpoint(s, principal, namespace, endpoint_id)
            q = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id)
            if before is not None:
                q = q.where(WebhookDelivery.id < before)
            rows = list((await s.execute(q.order_by(WebhookDelivery.id.desc()).limit(limit + 1))).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return [DeliveryView.of(d) for d in rows], (rows[-1].id if more else None)

    async def endpoint_for_send(
        self, principal: Principal, namespace: str, endpoint_id: int
    ) -> tuple[str, WebhookEndpoint]:
        """The namespace name and the endpoint row (detached), for a test ping."""
        async with readonly_session(self._sessions) as s:
            ns, ep = await self._endpoint(s, principal, namespace, endpoint_id)
            s.expunge(ep)
            return ns.name, ep

    async def redelivery(
        self, s: AsyncSession, principal: Principal, namespace: str, endpoint_id: int, delivery_id: int
    ) -> WebhookDelivery:
        """A new pending delivery of the same message (same ``webhook-id``, same body), added to ``s``.

        Raises:
            WebhookDisabled (409): enable the endpoint first. NotFound: no such delivery of this endpoint.
        """
        _, ep = await self._endpoint(s, principal, namespace, endpoint_id)
        old = (
            await s.execute(
                select(WebhookDelivery).where(
                    WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == ep.id
                )
            )
        ).scalar_one_or_none()
        if old is None:
            raise NotFound(f"webhook {endpoint_id} has no delivery {delivery_id}", delivery=delivery_id)
        if not ep.enabled:
            raise WebhookDisabled(
                f"webhook {endpoint_id} is disabled ({(ep.disabled_reason or '')[:200]}); enable it first",
                webhook=endpoint_id,
            )
        new = WebhookDelivery(
            endpoint_id=ep.id,
            event_id=old.event_id,
            event_type=old.event_type,
            message_id=old.message_id,
            body=old.body,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=utcnow(),
        )
        s.add(new)
        await s.flush()
        return new
