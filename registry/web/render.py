"""The web pages' Jinja2 environment (autoescape on), their filters, security headers and HTML error pages."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from registry.api.auth import services
from registry.errors import Forbidden
from registry.web import page_cache
from registry.web.session import COOKIE, LoginNeeded, login_redirect

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No inline script or style: what a hostile value could smuggle into a page has nowhere to run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_PREFIX = "/ui/static"
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: object) -> str:
    """``1.5 MiB``; ``-`` when unknown."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return "-"
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n, 1024)), len(_UNITS) - 1)
    return f"{n / 1024**exp:.1f} {_UNITS[exp]}"


def _as_datetime(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return _as_datetime(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def when(value: object) -> str:
    """A time as ``2024-06-11 12:00:05 UTC`` (what was given, when it is not a time)."""
    at = _as_datetime(value)
    if at is None:
        return "-" if value in (None, "") else str(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: object) -> str:
    at = _as_datetime(value)
    return at.astimezone(UTC).isoformat() if at else ""


def pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def short_cid(cid: object) -> str:
    text = str(cid or "")
    return text if len(text) <= 20 else f"{text[:10]}…{text[-6:]}"


def static_url(name: str) -> str:
    return f"{STATIC_PREFIX}/{name}"


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("registry.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        filters={"size": human_size, "when": when, "iso": iso, "pretty": pretty, "short_cid": short_cid},
        default_helpers=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """The page, with what every page's header needs and the security headers."""
    base = {
        "signed_in": COOKIE in request.cookies,
        "read_requires_token": services(request).read_requires_token,
        "path": request.path,
    }
    resp = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    resp.headers.update(HEADERS)
    return resp


def error_page(request: web.Request, status: int, code: str, message: str) -> web.Response:
    return render(request, "error.html", {"status": status, "code": code, "message": message}, status=status)


def _is_domain_error(e: BaseException) -> bool:
    # RegistryError, PinnerError and their subclasses all carry these two class attributes.
    return isinstance(getattr(type(e), "code", None), str) and isinstance(
        getattr(type(e), "http_status", None), int
    )


def page(handler: Page) -> Page:
    """A page handler whose refusals are HTML pages (not the API's JSON); a missing or rejected token
    sends the browser to the token form."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        hit = page_cache.cached(request)
        if hit is not None:
            return hit
        try:
            resp = await handler(request)
            page_cache.keep(request, resp)
            return resp
        except LoginNeeded as e:
            return login_redirect(request, e.reason)
        except Forbidden as e:
            return error_page(request, 403, e.code, e.message)
        except Exception as e:
            if not _is_domain_error(e):
                raise
            status: int = getattr(type(e), "http_status")  # noqa: B009
            if status >= 500:
                raise
            return error_page(request, status, getattr(type(e), "code"), getattr(e, "message", str(e)))  # noqa: B009

    return wrapped
