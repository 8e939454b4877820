"""Liveness and readiness probes."""

from __future__ import annotations

from aiohttp import web

from registry.api.endpoint import endpoint
from registry.api.keys import ENGINE
from registry.db.engine import ping
from registry.db.migrate import require_current
from registry.errors import DatabaseNotReady

routes = web.RouteTableDef()


@routes.get("/healthz")
@endpoint("Liveness", tag="health", responses={200: "application/json"})
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@endpoint("Readiness", tag="health", responses={200: "application/json", 503: "application/json"})
async def readyz(request: web.Request) -> web.Response:
    """Ready: the database answers and its schema is the one this code expects."""
    engine = request.app[ENGINE]
    try:
        await ping(engine)
        revision = await require_current(engine)
    except DatabaseNotReady as e:
        return web.json_response(
            {"status": "not_ready", "error": {"code": e.code, "message": e.message, "details": {}}},
            status=503,
        )
    return web.json_response({"status": "ready", "database": engine.dialect.name, "migration": revision})
