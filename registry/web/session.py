"""The web pages' token: with ``server.read_requires_token`` a person enters an API token once; it is kept in an
HttpOnly, SameSite=Strict cookie that only the web pages' reads accept (the JSON API still wants
``Authorization: Bearer``), so no other site can make a browser use it and no script on a page can read it.

The token form is CSRF-safe: a double-submit token (a random value in an HttpOnly cookie scoped to the form's
path and in a hidden field; both must match) and, when the browser sends them, ``Origin`` and
``Sec-Fetch-Site`` must name this site. The cookie only ever authorizes reads.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web
from yarl import URL

from registry.accounts.principal import Principal
from registry.api.auth import WEB_TOKEN_COOKIE, bearer_token, services
from registry.errors import Forbidden, Unauthorized

COOKIE = WEB_TOKEN_COOKIE  # the API's event stream reads it too (registry.api.auth)
CSRF_COOKIE = "modelpack_csrf"
LOGIN_PATH = "/ui/login"
COOKIE_MAX_AGE_S = 7 * 24 * 3600  # a person enters the token once a week at most (sooner when it is revoked)
CSRF_MAX_AGE_S = 3600
NEXT_MAX_LEN = 2048


class LoginNeeded(Exception):
    """Reads need a token and the browser sent none (``missing``) or one the registry refused (``rejected``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _token(request: web.Request) -> str | None:
    try:
        header = bearer_token(request)
    except Unauthorized:
        header = None
    return header or request.cookies.get(COOKIE) or None


async def web_read_gate(request: web.Request) -> Principal | None:
    """What ``registry.api.auth.read_gate`` is for the JSON API, for the pages: the cookie (or a bearer
    header) must hold a token with a read scope when ``server.read_requires_token`` is set."""
    svc = services(request)
    if not svc.read_requires_token:
        return None
    token = _token(request)
    if token is None:
        raise LoginNeeded("missing")
    try:
        principal = await svc.auth.authenticate(token)
    except Unauthorized:
        raise LoginNeeded("rejected") from None
    if not principal.may_read:
        raise Forbidden("this token has no read scope: reading needs a token with read, publish or admin")
    return principal


def safe_next(text: str | None) -> str:
    """Where to go after the form: a path on this site only (never ``//host`` or another scheme)."""
    if (
        not text
        or len(text) > NEXT_MAX_LEN
        or not text.startswith("/")
        or text.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 or c == "\\" for c in text)
        or text.startswith(LOGIN_PATH)
    ):
        return "/"
    return text


def login_redirect(request: web.Request, reason: str) -> web.Response:
    query = {"next": request.path_qs}
    if reason == "rejected":
        query["why"] = "rejected"
    resp = web.Response(status=303, headers={"Location": str(URL(LOGIN_PATH).with_query(query))})
    if reason == "rejected":
        resp.del_cookie(COOKIE, path="/")
    return resp


def new_csrf(request: web.Request, resp: web.StreamResponse, value: str | None = None) -> str:
    """A fresh form token, set as the CSRF cookie on ``resp``; the form carries the same value."""
    value = value or secrets.token_urlsafe(32)
    resp.set_cookie(
        CSRF_COOKIE,
        value,
        path=LOGIN_PATH,
        max_age=CSRF_MAX_AGE_S,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return value


def same_site(request: web.Request) -> bool:
    """Whether the browser says the form was posted from this site (headers it does not send pass)."""
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            host = URL(origin).host_port_subcomponent
        except ValueError:
            return False
        if host is None or host.lower() != request.host.lower():
            return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


def csrf_ok(request: web.Request, form_value: object) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return (
        isinstance(form_value, str)
        and bool(cookie)
        and hmac.compare_digest(cookie.encode(), form_value.encode())
        and same_site(request)
    )


def keep_token(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    resp.set_cookie(
        COOKIE,
        token,
        path="/",
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    resp.del_cookie(CSRF_COOKIE, path=LOGIN_PATH)
