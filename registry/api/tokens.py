"""API tokens over HTTP: an admin issues them, a publisher lists and revokes its own, ``whoami`` checks one."""

from __future__ import annotations

from aiohttp import web

from registry.accounts.auth import TokenInfo
from registry.api.auth import require_principal, services
from registry.api.endpoint import CURSOR, LIMIT, Param, endpoint, read_body
from registry.api.pagination import decode_cursor, encode_cursor, page_limit
from registry.api.schemas import TokenCreated, TokenIn, TokenList, TokenOut, WhoAmI
from registry.errors import BadRequest, Forbidden, NotFound

routes = web.RouteTableDef()
TOKEN_BODY_MAX = 16 * 1024


def _out(t: TokenInfo) -> TokenOut:
    return TokenOut.model_validate(t, from_attributes=True)


@routes.post("/v1/tokens")
@endpoint(
    "Issue an API token (admin)",
    tag="auth",
    responses={201: TokenCreated},
    body=TokenIn,
    body_max=TOKEN_BODY_MAX,
    auth=True,
    errors=(400, 401, 403, 413),
)
async def create_token(request: web.Request) -> web.Response:
    """Issue a token (admin scope); the publisher and namespaces are created as needed. Shown once.

    Never broader than the caller's token: a namespace admin issues tokens for its own publisher, with
    scopes and namespaces within its own; only a global admin (no namespace list) issues any token.
    """
    principal = await require_principal(request)
    if not principal.is_admin:
        raise Forbidden("issuing tokens needs a token with the admin scope")
    body = await read_body(request, TokenIn, "token")
    issued = await services(request).auth.create_token(
        body.publisher,
        namespaces=body.namespaces,
        scopes=body.scopes,
        description=body.description,
        issuer=principal,
    )
    out = TokenCreated(
        id=issued.id,
        prefix=issued.prefix,
        publisher=issued.publisher,
        scopes=list(issued.scopes),
        namespaces=list(issued.namespaces) if issued.namespaces is not None else None,
        description=body.description,
        token=issued.token,
    )
    return web.json_response(text=out.model_dump_json(), status=201)


@routes.get("/v1/tokens")
@endpoint(
    "Your tokens",
    tag="auth",
    responses={200: TokenList},
    params=(CURSOR, LIMIT),
    auth=True,
    errors=(400, 401),
)
async def list_tokens(request: web.Request) -> web.Response:
    """The caller's tokens (every token for a global admin; those within its namespaces for a namespace
    admin), without secrets, in id order; a page may hold fewer than ``limit``: follow ``next_cursor``."""
    principal = await require_principal(request)
    limit = page_limit(request, services(request))
    cur = decode_cursor(request.query.get("cursor"), 1)
    if cur is not None and not isinstance(cur[0], int):
        raise BadRequest("cursor is not one this API returned")
    items, last = await services(request).auth.list_tokens(
        principal, after_id=int(cur[0]) if cur else 0, limit=limit
    )
    page = TokenList(items=[_out(t) for t in items], next_cursor=encode_cursor([last]) if last else None)
    return web.json_response(text=page.model_dump_json())


@routes.delete("/v1/tokens/{token_id}")
@endpoint(
    "Revoke a token",
    tag="auth",
    responses={200: TokenOut},
    params=(Param("token_id", "path", {"type": "string"}, required=True),),
    auth=True,
    errors=(401, 404),
)
async def revoke_token(request: web.Request) -> web.Response:
    """Revoke a token: it stops working at once (yours, any for a global admin, those within its
    namespaces for a namespace admin; a token without a write scope revokes only itself)."""
    principal = await require_principal(request)
    text = request.match_info["token_id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise NotFound(f"no token with id {text!r}")
    info = await services(request).auth.revoke(principal, int(text))
    return web.json_response(text=_out(info).model_dump_json())


@routes.get("/v1/whoami")
@endpoint("Who the token belongs to", tag="auth", responses={200: WhoAmI}, auth=True, errors=(401,))
async def whoami(request: web.Request) -> web.Response:
    """The publisher, scopes and namespaces of the calling token."""
    p = await require_principal(request)

    def render() -> bytes:
        return (
            WhoAmI(
                publisher=p.publisher,
                token_id=p.token_id,
                scopes=sorted(p.scopes),
                namespaces=list(p.namespaces) if p.namespaces is not None else None,
            )
            .model_dump_json()
            .encode()
        )

    # The same principal object comes back while the token is cached: its JSON is rendered once for it.
    body = services(request).rendered.get(("whoami", p.token_id), p, render)
    return web.Response(body=body, headers={"Content-Type": "application/json; charset=utf-8"})
