"""The registry's web pages: server-rendered HTML (Jinja2, autoescaped) for people, at ``/`` and under ``/ui/``,
read through the same services as the JSON API. ``setup_web`` adds them to the daemon's application."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from registry.web import login, node_pages, pack_page, page_cache, pages
from registry.web.render import STATIC_PREFIX, error_page, setup_templates

STATIC_DIR = Path(__file__).parent / "static"


async def _not_found(request: web.Request) -> web.Response:
    return error_page(request, 404, "not_found", f"there is no page at {request.path[:200]}")


def setup_web(app: web.Application) -> None:
    """Templates, the pages, their CSS and script, and an HTML 404 for any other ``/ui/`` path."""
    setup_templates(app)
    page_cache.setup(app)
    for module in (pages, pack_page, node_pages, login):
        app.add_routes(module.routes)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="web-static")
    app.router.add_get("/ui/{tail:.*}", _not_found)
