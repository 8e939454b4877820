"""Webhooks over HTTP: ``/v1/namespaces/{namespace}/webhooks`` for the namespace's admins (a token with the
admin scope covering it; anyone else 403, before anything is read). An endpoint id from another namespace is
404. Creating an endpoint and rotating its secret are the only answers that carry the secret."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from registry.accounts.principal import Principal
from registry.api import formats
from registry.api.auth import require_principal, services
from registry.api.endpoint import LIMIT, NS, Param, endpoint, read_body
from registry.api.pagination import page_limit
from registry.errors import BadRequest
from registry.names import check_name
from registry.webhooks.config import URL_MAX, WEBHOOK_EVENT_TYPES
from registry.webhooks.endpoints import DeliveryView, EndpointView
from registry.webhooks.service import WebhookService

routes = web.RouteTableDef()
WEBHOOKS: web.AppKey[WebhookService] = web.AppKey("webhooks")
BODY_MAX = 16 * 1024
ID_MAX = 2**31 - 1
_ID = {"type": "integer", "minimum": 1, "maximum": ID_MAX}
HOOK = Param("webhook", "path", _ID, "webhook id", required=True)
DELIVERY = Param("delivery", "path", _ID, "delivery id", required=True)
BEFORE = Param("before", "query", _ID, "next_before of the previous page (deliveries with a smaller id)")
ADMIN_ERRORS = (400, 401, 403, 404)
BASE = "/v1/namespaces/{namespace}/webhooks"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


EventType = Annotated[str, Field(max_length=64, json_schema_extra={"enum": list(WEBHOOK_EVENT_TYPES)})]
ModelName = Annotated[str, Field(max_length=64, json_schema_extra={"pattern": formats.NAME})]


class WebhookIn(_In):
    url: str = Field(max_length=URL_MAX, description="http(s) URL on webhooks.allowed_hosts, no credentials")
    events: list[EventType] | None = Field(
        None, max_length=64, description="event types to deliver (default: all of them)"
    )
    model: ModelName | None = Field(None, description="only this model's events (its name in the namespace)")


class WebhookPatch(_In):
    enabled: bool = Field(description="true: enable again (failure count reset); false: disable")


class WebhookOut(_Out):
    id: int
    namespace: str
    url: str
    events: list[str]
    model: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: str | None
    consecutive_failures: int
    last_event_id: int = Field(description="events up to this id have been turned into deliveries")
    previous_secret_until: str | None = Field(description="the rotated-out secret also signs until then")
    created_by: str
    created_at: str


class WebhookSecretOut(_Out):
    webhook: WebhookOut
    secret: str = Field(description="whsec_ + base64 of the key: shown this once")


class WebhookList(_Out):
    items: list[WebhookOut]


class DeliveryOut(_Out):
    id: int
    webhook: int
    event_id: int | None = Field(description="null for a webhook.test ping")
    type: str
    message_id: str = Field(description="the webhook-id header (the same on every attempt and redelivery)")
    status: str = Field(description="pending | delivered | failed (retried at next_attempt_at) | dead")
    attempts: int
    last_status_code: int | None
    latency_ms: int | None
    response_excerpt: str | None = Field(description="the start of the receiver's answer (at most 1 KiB)")
    error: str | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str


class DeliveryPage(_Out):
    items: list[DeliveryOut]
    next_before: int | None = Field(description="pass as ?before= for older deliveries; null: no more")


def webhooks(request: web.Request) -> WebhookService:
    return request.app[WEBHOOKS]


def _int(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 10) or not 1 <= int(text) <= ID_MAX:
        raise BadRequest(f"{what} {text[:40]!r} is not an id (an integer from 1)", **{what: text[:40]})
    return int(text)


async def _admin(request: web.Request) -> tuple[Principal, str]:
    """The caller and the path's namespace, once the caller is known to administer it."""
    principal = await require_principal(request)
    namespace = check_name(request.match_info["namespace"], "namespace")
    principal.require_admin_of(namespace, "managing webhooks")
    return principal, namespace


def _hook(request: web.Request) -> int:
    return _int(request.match_info["webhook"], "webhook")


def _out(v: EndpointView) -> WebhookOut:
    return WebhookOut.model_validate(v, from_attributes=True)


def _delivery(v: DeliveryView) -> DeliveryOut:
    return DeliveryOut.model_validate(v, from_attributes=True)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


@routes.post(BASE)
@endpoint(
    "Register a webhook endpoint (the answer carries its secret, shown this once)",
    tag="webhooks",
    responses={201: WebhookSecretOut},
    params=(NS,),
    body=WebhookIn,
    body_max=BODY_MAX,
    auth=True,
    errors=(*ADMIN_ERRORS, 409, 413),
)
async def create_webhook(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    body = await read_body(request, WebhookIn, "webhook")
    view, secret = await webhooks(request).endpoints.create(
        principal, namespace, url=body.url, events=body.events, model=body.model
    )
    return _json(WebhookSecretOut(webhook=_out(view), secret=secret), status=201)


@routes.get(BASE)
@endpoint(
    "The namespace's webhook endpoints",
    tag="webhooks",
    responses={200: WebhookList},
    params=(NS,),
    auth=True,
    errors=ADMIN_ERRORS,
)
async def list_webhooks(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    views = await webhooks(request).endpoints.list_endpoints(principal, namespace)
    return _json(WebhookList(items=[_out(v) for v in views]))


@routes.get(BASE + "/{webhook}")
@endpoint(
    "One webhook endpoint", tag="webhooks", responses={200: WebhookOut}, params=(NS, HOOK), auth=True,
    errors=ADMIN_ERRORS,
)  # fmt: skip
async def get_webhook(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    return _json(_out(await webhooks(request).endpoints.get(principal, namespace, _hook(request))))


@routes.patch(BASE + "/{webhook}")
@endpoint(
    "Enable (failure count reset; events from now on) or disable a webhook endpoint",
    tag="webhooks",
    responses={200: WebhookOut},
    params=(NS, HOOK),
    body=WebhookPatch,
    body_max=BODY_MAX,
    auth=True,
    errors=(*ADMIN_ERRORS, 413),
)
async def update_webhook(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    hook = _hook(request)
    body = await read_body(request, WebhookPatch, "webhook")
    view = await webhooks(request).endpoints.set_enabled(principal, namespace, hook, body.enabled)
    return _json(_out(view))


@routes.delete(BASE + "/{webhook}")
@endpoint(
    "Remove a webhook endpoint and its delivery log",
    tag="webhooks",
    responses={200: WebhookOut},
    params=(NS, HOOK),
    auth=True,
    errors=ADMIN_ERRORS,
)
async def delete_webhook(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    return _json(_out(await webhooks(request).endpoints.remove(principal, namespace, _hook(request))))


@routes.post(BASE + "/{webhook}/rotate-secret")
@endpoint(
    "A new secret (shown this once); the old one also signs for webhooks.secret_grace_s",
    tag="webhooks",
    responses={200: WebhookSecretOut},
    params=(NS, HOOK),
    auth=True,
    errors=ADMIN_ERRORS,
)
async def rotate_webhook_secret(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    view, secret = await webhooks(request).endpoints.rotate(principal, namespace, _hook(request))
    return _json(WebhookSecretOut(webhook=_out(view), secret=secret))


@routes.post(BASE + "/{webhook}/test")
@endpoint(
    "Send a signed webhook.test ping now; the delivery as it ended (not retried)",
    tag="webhooks",
    responses={200: DeliveryOut},
    params=(NS, HOOK),
    auth=True,
    errors=ADMIN_ERRORS,
)
async def test_webhook(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    return _json(_delivery(await webhooks(request).test(principal, namespace, _hook(request))))


@routes.get(BASE + "/{webhook}/deliveries")
@endpoint(
    "The endpoint's delivery log, newest first (cursor: next_before)",
    tag="webhooks",
    responses={200: DeliveryPage},
    params=(NS, HOOK, BEFORE, LIMIT),
    auth=True,
    errors=ADMIN_ERRORS,
)
async def list_webhook_deliveries(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    hook = _hook(request)
    before_text = request.query.get("before")
    before = None if before_text is None else _int(before_text, "before")
    limit = page_limit(request, services(request))
    items, next_before = await webhooks(request).endpoints.deliveries(
        principal, namespace, hook, before=before, limit=limit
    )
    return _json(DeliveryPage(items=[_delivery(d) for d in items], next_before=next_before))


@routes.post(BASE + "/{webhook}/deliveries/{delivery}/redeliver")
@endpoint(
    "Deliver a message again (same webhook-id and body) as a new delivery, queued at once",
    tag="webhooks",
    responses={202: DeliveryOut},
    params=(NS, HOOK, DELIVERY),
    auth=True,
    errors=(*ADMIN_ERRORS, 409),
)
async def redeliver_webhook(request: web.Request) -> web.Response:
    principal, namespace = await _admin(request)
    hook = _hook(request)
    delivery = _int(request.match_info["delivery"], "delivery")
    view = await webhooks(request).redeliver(principal, namespace, hook, delivery)
    return _json(_delivery(view), status=202)
