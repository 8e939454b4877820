"""The IPFS Pinning Service API v1.0.0 (``../shared/conformance/pinning-service``), as a sub-application
mounted at ``pinning.base_path`` (default ``/psa``). Its document is the spec itself, not /openapi.json.

Tenancy: a token with the ``pin`` scope; a publisher sees and changes only its own pins (another's
requestid is 404, so ids never leak).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache
from typing import Any

from aiohttp import web
from yarl import URL

from registry.accounts.principal import Principal
from registry.api.auth import bearer_token
from registry.api.bodies import read_json_object
from registry.api.keys import REGISTRY
from registry.api.psa_errors import psa_error_middleware
from registry.errors import Unauthorized
from registry.pinning.config import PinningConfig
from registry.pinning.delegates import NodeAddresses, pick_delegates
from registry.pinning.requests import parse_filter, parse_pin
from registry.pinning.service import PinService, PinView

BODY_MAX = 64 * 1024
routes = web.RouteTableDef()


@dataclass(frozen=True)
class PsaServices:
    pins: PinService
    addresses: NodeAddresses
    config: PinningConfig


PSA: web.AppKey[PsaServices] = web.AppKey("psa")


def _svc(request: web.Request) -> PsaServices:
    return request.config_dict[PSA]


async def _principal(request: web.Request) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("send 'Authorization: Bearer <token>' (a token with the pin scope)")
    principal = await request.config_dict[REGISTRY].auth.authenticate(token)
    if "pin" not in principal.scopes:
        raise Unauthorized("this token lacks the pin scope: the Pinning Service API needs one that has it")
    return principal


def _fallback(request: web.Request) -> list[str]:
    """With no node address known: this daemon's own address (its gateway serves the blocks it has)."""
    return list(_own_address(request.host))


@lru_cache(maxsize=64)
def _own_address(authority: str) -> tuple[str, ...]:
    """The multiaddr of ``host[:port]`` as a request's Host names it (parsed once per distinct value)."""
    try:
        url = URL(f"http://{authority}")
        host, port = url.host or "127.0.0.1", url.port or 80
    except ValueError:  # not a host[:port]: this machine's loopback, as with no Host at all
        host, port = "127.0.0.1", 80
    try:
        proto = "ip4" if ipaddress.ip_address(host).version == 4 else "ip6"
    except ValueError:
        proto = "dns"
    return (f"/{proto}/{host}/tcp/{port}/http",)


async def _render(request: web.Request, svc: PsaServices, views: list[PinView]) -> list[dict[str, Any]]:
    holders = await svc.pins.holders([v.cid_key for v in views if v.holders is None])
    known = await svc.addresses.by_node()  # asked once per request; the pick is memoized per holder set
    fallback = _fallback(request)
    picks: dict[frozenset[int], list[str]] = {}
    out = []
    for v in views:
        held = v.holders if v.holders is not None else frozenset(holders.get(v.cid_key, ()))
        delegates = picks.get(held)
        if delegates is None:
            delegates = picks[held] = pick_delegates(known, set(held), svc.config.delegates_max) or fallback
        pin: dict[str, Any] = {"cid": v.cid, "origins": list(v.origins), "meta": v.meta}
        if v.name is not None:
            pin["name"] = v.name
        out.append(
            {
                "requestid": v.requestid,
                "status": v.status.value,
                "created": v.created.astimezone(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "pin": pin,
                "delegates": delegates,
                "info": v.info,
            }
        )
    return out


@routes.get("/pins")
async def list_pins(request: web.Request) -> web.Response:
    principal = await _principal(request)
    svc = _svc(request)
    query: dict[str, list[str]] = {}
    for key, value in request.query.items():
        query.setdefault(key, []).append(value)
    count, views = await svc.pins.list_pins(principal.publisher_id, parse_filter(query, svc.config))
    return web.json_response({"count": count, "results": await _render(request, svc, views)})


@routes.post("/pins")
async def add_pin(request: web.Request) -> web.Response:
    principal = await _principal(request)
    svc = _svc(request)
    req = parse_pin(await read_json_object(request, BODY_MAX, 8, "pin"), svc.config)
    view = await svc.pins.add(principal.publisher_id, req)
    return web.json_response((await _render(request, svc, [view]))[0], status=202)


@routes.get("/pins/{requestid}")
async def get_pin(request: web.Request) -> web.Response:
    principal = await _principal(request)
    svc = _svc(request)
    view = await svc.pins.get(principal.publisher_id, request.match_info["requestid"])
    return web.json_response((await _render(request, svc, [view]))[0])


@routes.post("/pins/{requestid}")
async def replace_pin(request: web.Request) -> web.Response:
    principal = await _principal(request)
    svc = _svc(request)
    req = parse_pin(await read_json_object(request, BODY_MAX, 8, "pin"), svc.config)
    view = await svc.pins.replace(principal.publisher_id, request.match_info["requestid"], req)
    return web.json_response((await _render(request, svc, [view]))[0], status=202)


@routes.delete("/pins/{requestid}")
async def delete_pin(request: web.Request) -> web.Response:
    principal = await _principal(request)
    await _svc(request).pins.delete(principal.publisher_id, request.match_info["requestid"])
    return web.Response(status=202)


def psa_app() -> web.Application:
    """The sub-application the daemon mounts at its base path."""
    app = web.Application(middlewares=[psa_error_middleware])
    app.add_routes(routes)
    return app
