"""The recent-events panel: the newest events, server-rendered (readable without JavaScript), and the event id
a page was rendered at. The page's script subscribes to ``GET /v1/events/stream?after=<that id>``, so no event
committed between rendering and subscribing is missed."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from registry.accounts.principal import Principal
from registry.api.auth import services
from registry.api.keys import SESSIONS
from registry.db.engine import readonly_session
from registry.events.service import Viewer
from registry.events.store import event_json, last_id

RECENT = 20


def _viewer(principal: Principal | None) -> Viewer:
    if principal is None:
        return Viewer()
    return Viewer(publisher=principal.publisher, global_admin=principal.is_global_admin)


async def last_event_id(request: web.Request) -> int | None:
    """The newest event's id (0: none yet); None when the outbox cannot be read (the page then shows no
    events and subscribes from whatever the stream calls now)."""
    try:
        async with readonly_session(request.app[SESSIONS]) as s:
            return await last_id(s)
    except SQLAlchemyError:
        return None


async def recent_events(
    request: web.Request, principal: Principal | None
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to RECENT newest events the reader may see, newest first, and the id the page subscribes after."""
    last = await last_event_id(request)
    if not last:
        return [], last
    rows, _ = await services(request).events.page(
        _viewer(principal), after=max(0, last - RECENT), limit=RECENT
    )
    out = []
    for e in reversed(rows):
        item = event_json(e)
        model = str(item.get("model") or "")
        if model and "/" not in model and item.get("namespace"):
            model = f"{item['namespace']}/{model}"
        item["model_name"] = model or None
        out.append(item)
    return out, last
