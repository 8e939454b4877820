"""The event feed (``GET /v1/events``, cursor pagination on the event id) and its live form as Server-Sent
Events (``GET /v1/events/stream``, resuming from ``Last-Event-ID``). Both obey the read gate; ``pin.status``
events are shown only to their publisher's tokens (and global admins)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from registry import metrics
from registry.api import formats
from registry.api.auth import bearer_token, page_token, read_gate, require_principal, services
from registry.api.endpoint import LIMIT, READ_ERRORS, Param, endpoint
from registry.api.pagination import page_limit
from registry.errors import BadRequest, RegistryError
from registry.events.service import TooManySubscribers, Viewer
from registry.events.store import EVENT_TYPES, event_json
from registry.names import check_name

routes = web.RouteTableDef()
ID_MAX = 2**63 - 1
_TYPE = "(?:" + "|".join(t.replace(".", "\\.") for t in EVENT_TYPES) + ")"
FILTERS = (
    Param("after", "query", {"type": "integer", "minimum": 0, "maximum": ID_MAX}, "events with a larger id"),
    Param(
        "type",
        "query",
        {"type": "string", "pattern": f"^{_TYPE}(?:,{_TYPE})*$"},
        "event types, repeated or comma-joined",
    ),
    Param("namespace", "query", {"type": "string", "pattern": formats.NAME}, "events of this namespace only"),
)


class EventOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    type: str
    namespace: str | None
    model: str | None
    pack: str | None
    actor: str | None
    created_at: str
    payload: dict[str, Any]


class EventPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[EventOut]
    next_after: int = Field(description="pass as ?after= for the next page (the last id read)")


class StreamsFull(RegistryError):
    code = "too_many_streams"
    http_status = 503


def _id(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or int(text) > ID_MAX:
        raise BadRequest(f"{what} {text[:40]!r} is not an event id (a non-negative integer)", value=text[:40])
    return int(text)


def _filters(request: web.Request) -> tuple[list[str], str | None]:
    types = [t for raw in request.query.getall("type", []) for t in raw.split(",")]
    for t in types:
        if t not in EVENT_TYPES:
            raise BadRequest(
                f"type {t[:64]!r} is not an event type; one of {', '.join(EVENT_TYPES)}", type=t[:64]
            )
    namespace = request.query.get("namespace")
    if namespace is not None:
        check_name(namespace, "namespace")
    return list(dict.fromkeys(types)), namespace


async def _viewer(request: web.Request, *, cookie: bool = False) -> Viewer:
    """Anonymous readers see no pin events; a token sees its publisher's (all of them: a global admin)."""
    if (page_token(request) if cookie else bearer_token(request)) is None:
        return Viewer()
    p = await require_principal(request, cookie=cookie)
    return Viewer(publisher=p.publisher, global_admin=p.is_global_admin)


@routes.get("/v1/events")
@endpoint(
    "Events after an id, oldest first (cursor: next_after)",
    tag="events",
    responses={200: EventPage},
    params=(*FILTERS, LIMIT),
    errors=READ_ERRORS,
)
async def list_events(request: web.Request) -> web.Response:
    await read_gate(request)
    svc = services(request)
    types, namespace = _filters(request)
    after = _id(request.query.get("after"), "after") or 0
    limit = page_limit(request, svc)
    viewer = await _viewer(request)
    rows, cursor = await svc.events.page(viewer, after=after, types=types, namespace=namespace, limit=limit)
    page = EventPage(items=[EventOut(**event_json(e)) for e in rows], next_after=cursor)
    return web.json_response(text=page.model_dump_json())


@routes.get("/v1/events/stream")
@endpoint(
    "Server-Sent Events: events as they happen (resume with Last-Event-ID or ?after=)",
    tag="events",
    responses={200: "text/event-stream"},
    params=(*FILTERS,),
    errors=(*READ_ERRORS, 503),
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    await read_gate(request, cookie=True)  # the web pages' EventSource sends their token cookie
    svc = services(request)
    types, namespace = _filters(request)
    after = _id(request.headers.get("Last-Event-ID"), "Last-Event-ID")
    if after is None:
        after = _id(request.query.get("after"), "after")
    if after is not None and after > (newest := await svc.events.last_id()):
        raise BadRequest(
            f"event id {after} is after the newest event ({newest}); resume from an id this registry sent",
            after=after,
        )
    viewer = await _viewer(request, cookie=True)
    try:
        events = svc.events.stream(viewer, after=after, types=types, namespace=namespace)
    except TooManySubscribers as e:
        raise StreamsFull(f"{e}; try again later") from None
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    metrics.sse_subscribers_inc()
    stall = 2 * svc.events.config.heartbeat_s  # a client that reads nothing this long is dropped
    try:
        await resp.write(b"retry: 2000\n\n")  # headers and this line go out before any event
        async for item in events:
            await asyncio.wait_for(resp.write(_frame(item)), stall)
    except (ConnectionResetError, RuntimeError):  # the client went away mid-write
        pass
    except TimeoutError:  # its socket buffers are full and it does not read: drop it
        if request.transport is not None:
            request.transport.abort()
    finally:
        metrics.sse_subscribers_dec()
        await events.aclose()
    return resp


def _frame(item: object) -> bytes:
    if item is None:
        return b": keep-alive\n\n"
    doc = event_json(item)  # type: ignore[arg-type]
    data = json.dumps(doc, separators=(",", ":"))
    return f"id: {doc['id']}\nevent: {doc['type']}\ndata: {data}\n\n".encode()
