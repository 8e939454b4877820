"""API tokens over HTTP: an admin issues them, a publisher lists and revokes its own, ``whoami`` checks one."""

from __future__ import annotations

from aiohttp import web

from registry.accounts.auth import TokenInfo
from registry.api.auth import require_principal, services
from registry.api.endpoint import Param, endpoint, read_body
from registry.api.schemas import TokenCreated, TokenIn, TokenList, TokenOut, WhoAmI
from registry.errors import Forbidden, NotFound

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
    """Issue a token (admin scope); the publisher and namespaces are created as needed. Shown once."""
    principal = await require_principal(request)
    if not principal.is_admin:
        raise Forbidden("issuing tokens needs a token with the admin scope")
    body = await read_body(request, TokenIn, "token")
    issued = await services(request).auth.create_token(
        body.publisher, namespaces=body.namespaces, scopes=body.scopes, description=body.description
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
@endpoint("Your tokens", tag="auth", responses={200: TokenList}, auth=True, errors=(401,))
async def list_tokens(request: web.Request) -> web.Response:
    """The caller's tokens (every token for an admin), without secrets."""
    principal = await require_principal(request)
    items = await services(request).auth.list_tokens(principal)
    return web.json_response(text=TokenList(items=[_out(t) for t in items]).model_dump_json())


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
    """Revoke a token: it stops working at once."""
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
    out = WhoAmI(
        publisher=p.publisher,
        token_id=p.token_id,
        scopes=sorted(p.scopes),
        namespaces=list(p.namespaces) if p.namespaces is not None else None,
    )
    return web.json_response(text=out.model_dump_json())
