"""The token form (``/ui/login``) and sign-out (``/ui/logout``): see registry.web.session for the design."""

from __future__ import annotations

import secrets

from aiohttp import web

from registry.api.auth import services
from registry.errors import Unauthorized
from registry.web.render import render
from registry.web.session import COOKIE, LOGIN_PATH, csrf_ok, keep_token, new_csrf, safe_next, same_site

routes = web.RouteTableDef()
FORM_MAX_BYTES = 8 * 1024
TOKEN_MAX_LEN = 1024
REJECTED = "Your saved token was not accepted any more (unknown, expired or revoked): enter a token again."


def _form(
    request: web.Request, *, next_path: str, message: str | None = None, status: int = 200
) -> web.Response:
    """The form with a fresh CSRF value (in its hidden field and in the CSRF cookie)."""
    csrf = secrets.token_urlsafe(32)
    resp = render(
        request,
        "login.html",
        {"next": next_path, "message": message, "csrf": csrf, "nav": "login"},
        status=status,
    )
    new_csrf(request, resp, csrf)
    return resp


@routes.get(LOGIN_PATH)
async def login_form(request: web.Request) -> web.Response:
    message = REJECTED if request.query.get("why") == "rejected" else None
    return _form(request, next_path=safe_next(request.query.get("next")), message=message)


@routes.post(LOGIN_PATH)
async def login(request: web.Request) -> web.Response:
    """Check the token, then keep it in the cookie and go back to the page that asked for it."""
    if request.content_length is None or request.content_length > FORM_MAX_BYTES:
        return _form(
            request,
            next_path="/",
            message=f"The form must be sent with a length of at most {FORM_MAX_BYTES} bytes.",
            status=413,
        )
    form = await request.post()
    next_path = safe_next(str(form.get("next") or ""))
    if not csrf_ok(request, form.get("csrf")):
        return _form(
            request,
            next_path=next_path,
            message="The form expired or was not sent from this site: enter the token again.",
            status=403,
        )
    token = str(form.get("token") or "").strip()
    if not token:
        return _form(request, next_path=next_path, message="Enter an API token.", status=400)
    if len(token) > TOKEN_MAX_LEN:
        return _form(
            request,
            next_path=next_path,
            message=f"That is not an API token: it is longer than {TOKEN_MAX_LEN} characters.",
            status=400,
        )
    try:
        principal = await services(request).auth.authenticate(token)
    except Unauthorized as e:
        return _form(
            request,
            next_path=next_path,
            message=f"That token was not accepted: {e.message}.",
            status=401,
        )
    if not principal.may_read:
        return _form(
            request,
            next_path=next_path,
            message="That token cannot read: it needs the read, publish or admin scope.",
            status=403,
        )
    resp = web.Response(status=303, headers={"Location": next_path})
    keep_token(request, resp, token)
    return resp


@routes.post("/ui/logout")
async def logout(request: web.Request) -> web.Response:
    """Forget the token. Only from this site's own pages (a stray cross-site form changes nothing)."""
    if not same_site(request):
        return render(
            request,
            "error.html",
            {"status": 403, "code": "forbidden", "message": "Sign out from this site's own pages."},
            status=403,
        )
    resp = web.Response(status=303, headers={"Location": "/"})
    resp.del_cookie(COOKIE, path="/")
    return resp
