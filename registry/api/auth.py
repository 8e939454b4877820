"""Bearer tokens on requests: who is calling, and the optional gate that makes reads need a token too."""

from __future__ import annotations

from aiohttp import web

from registry.accounts.principal import Principal
from registry.api.context import RegistryServices
from registry.api.keys import REGISTRY
from registry.errors import Forbidden, Unauthorized


def services(request: web.Request) -> RegistryServices:
    return request.app[REGISTRY]


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", reason="malformed")
    return token.strip()


# The web pages keep a token in this HttpOnly, SameSite=Strict cookie (registry.web.session); of the API, only
# the event stream accepts it (a browser's EventSource cannot send an Authorization header).
WEB_TOKEN_COOKIE = "modelpack_token"


def page_token(request: web.Request) -> str | None:
    """The bearer token, else (GET only) the web pages' token cookie."""
    token = bearer_token(request)
    if token is None and request.method == "GET":
        token = request.cookies.get(WEB_TOKEN_COOKIE) or None
    return token


async def require_principal(request: web.Request, *, cookie: bool = False) -> Principal:
    """The caller's principal; Unauthorized (401) without a valid token. ``cookie``: the web pages' token
    cookie counts too (GET only)."""
    token = page_token(request) if cookie else bearer_token(request)
    if token is None:
        raise Unauthorized(
            "this request needs an API token: send 'Authorization: Bearer <token>'", reason="missing"
        )
    return await services(request).auth.authenticate(token)


async def read_gate(request: web.Request, *, cookie: bool = False) -> None:
    """Reads are public unless ``server.read_requires_token`` is set: then a token with a read scope
    (``read``, ``publish`` or ``admin``; ``pin`` alone grants no reads)."""
    if services(request).read_requires_token:
        principal = await require_principal(request, cookie=cookie)
        if not principal.may_read:
            raise Forbidden("reading needs a token with the read (or publish, admin) scope")
