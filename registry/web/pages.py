"""The models page (search by name prefix, namespace filter) and a model's page (versions, pointers and their
history, IPNS channels), read through the same services as ``/v1/models``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from yarl import URL

from registry.api.auth import services
from registry.api.keys import IPNS_CHANNELS
from registry.api.models import PREFIX_MAX_LEN
from registry.api.packs import model_ref
from registry.api.pagination import decode_cursor, encode_cursor
from registry.errors import BadRequest, InvalidName, NotFound
from registry.ipns.record import WITHDRAWN_PATH
from registry.names import ModelRef, check_name
from registry.web.events_panel import recent_events
from registry.web.render import page, render
from registry.web.session import web_read_gate

routes = web.RouteTableDef()
PAGE_SIZE = 50
HISTORY_SIZE = 50


def pull_line(ref: ModelRef, tag: str) -> str:
    return f"modelpack pull {ref}@{tag} {ref.model}"


def _page_url(request: web.Request, **changes: str | None) -> str:
    query = {k: v for k, v in request.query.items() if k not in changes}
    query.update({k: v for k, v in changes.items() if v is not None})
    return str(URL(request.path).with_query(query))


@routes.get("/")
@routes.get("/ui/models")
@page
async def models_page(request: web.Request) -> web.Response:
    """Every model, optionally of one namespace and/or whose name starts with the search text; the newest
    events below them."""
    principal = await web_read_gate(request)
    text = request.query.get("q", "").strip().lower()
    ns = request.query.get("namespace", "").strip().lower()
    events, events_after = await recent_events(request, principal)
    context: dict[str, Any] = {
        "nav": "models",
        "q": text,
        "namespace": ns,
        "models": [],
        "next_url": None,
        "events": events,
        "events_after": events_after,
    }
    try:
        if ns:
            check_name(ns, "namespace")
        if len(text) > PREFIX_MAX_LEN:
            raise BadRequest(f"the search text is longer than {PREFIX_MAX_LEN} characters")
        cur = decode_cursor(request.query.get("cursor"), 2)
    except (BadRequest, InvalidName) as e:
        return render(request, "models.html", {**context, "error": e.message}, status=400)
    rows = await services(request).browse.list_models(
        namespace=ns or None,
        prefix=text or None,
        after=(str(cur[0]), str(cur[1])) if cur else None,
        limit=PAGE_SIZE + 1,
    )
    if len(rows) > PAGE_SIZE:
        last = rows[PAGE_SIZE - 1]
        context["next_url"] = _page_url(request, cursor=encode_cursor([last.namespace, last.name]))
    context["models"] = rows[:PAGE_SIZE]
    return render(request, "models.html", context)


def _versions_cursor(text: str | None) -> tuple[datetime, str] | None:
    cur = decode_cursor(text, 2)
    if cur is None:
        return None
    try:
        return datetime.fromisoformat(str(cur[0])), str(cur[1])
    except ValueError:
        raise BadRequest("cursor is not one this page made", cursor=str(cur[0])[:40]) from None


def _history_cursor(text: str | None) -> int | None:
    cur = decode_cursor(text, 1)
    if cur is not None and not isinstance(cur[0], int):
        raise BadRequest("cursor is not one this page made", cursor=str(cur[0])[:40])
    return int(cur[0]) if cur else None


async def _channels(request: web.Request, ref: ModelRef) -> list[dict[str, Any]]:
    """The model's IPNS channels that have a record (``curated``, and ``latest`` when published)."""
    channels = request.app[IPNS_CHANNELS]
    out = []
    for tag in sorted(channels.config.channel_tags):
        try:
            rec = await channels.for_channel(ref, tag)
        except NotFound:
            continue
        out.append(
            {
                "tag": tag,
                "name": rec.name,
                "sequence": rec.sequence,
                "value": rec.value,
                "withdrawn": rec.value == WITHDRAWN_PATH,
                "validity": rec.validity,
                "published_at": rec.published_at,
                "record_url": f"/ipns/{rec.name}?format=ipns-record",
            }
        )
    return out


@routes.get("/ui/models/{namespace}/{model}")
@page
async def model_page(request: web.Request) -> web.Response:
    """A model: its versions (newest first), pointers, their history and its IPNS channels."""
    await web_read_gate(request)
    svc = services(request)
    ref = model_ref(request)
    after = _versions_cursor(request.query.get("cursor"))
    history_after = _history_cursor(request.query.get("history"))
    versions = await svc.browse.list_versions(ref, after=after, limit=PAGE_SIZE + 1)
    if versions:  # the names as created (a lookup in another case finds the model)
        ref = ModelRef(versions[0].namespace, versions[0].model)
    pointers = await svc.pointers.list_tags(ref)
    history = await svc.pointers.history(ref, None, after_id=history_after, limit=HISTORY_SIZE + 1)
    next_url = history_url = None
    if len(versions) > PAGE_SIZE:
        last = versions[PAGE_SIZE - 1]
        next_url = _page_url(request, cursor=encode_cursor([last.created_at.isoformat(), last.cid]))
    if len(history) > HISTORY_SIZE:
        history_url = _page_url(request, history=encode_cursor([history[HISTORY_SIZE - 1].id]))
    by_cid: dict[str, list[str]] = {}
    for p in pointers:
        by_cid.setdefault(p.cid, []).append(p.tag)
    return render(
        request,
        "model.html",
        {
            "nav": "models",
            "ref": ref,
            "versions": versions[:PAGE_SIZE],
            "tags_of": by_cid,
            "pointers": [{"view": p, "pull": pull_line(ref, p.tag)} for p in pointers],
            "history": history[:HISTORY_SIZE],
            "channels": await _channels(request, ref),
            "next_url": next_url,
            "history_url": history_url,
        },
    )
