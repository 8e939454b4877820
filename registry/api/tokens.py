"""API tokens over HTTP: an admin issues them, a publisher lists and revokes its own, ``whoami`` checks one."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from registry.accounts.auth import TokenInfo
from registry.api.auth import require_principal, services
from registry.api.bodies import read_limited
from registry.api.schemas import TokenCreated, TokenIn, TokenList, TokenOut, WhoAmI
from registry.errors import BadRequest, Forbidden, NotFound

routes = web.RouteTableDef()
TOKEN_BODY_MAX = 16 * 1024


def _out(t: TokenInfo) -> TokenOut:
    return TokenOut.model_validate(t, from_attributes=True)


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    """Issue a token (admin scope); the publisher and namespaces are created as needed. Shown once."""
    principal = await require_principal(request)
    if not principal.is_admin:
        raise Forbidden("issuing tokens needs a token with the admin scope")
    try:
        body = TokenIn.model_validate_json(await read_limited(request, TOKEN_BODY_MAX))
    except ValidationError as e:
        err = e.errors()[0]
        raise BadRequest(f"token body: {'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}") from None
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
async def list_tokens(request: web.Request) -> web.Response:
    """The caller's tokens (every token for an admin), without secrets."""
    principal = await require_principal(request)
    items = await services(request).auth.list_tokens(principal)
    return web.json_response(text=TokenList(items=[_out(t) for t in items]).model_dump_json())


@routes.delete("/v1/tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    """Revoke a token: it stops working at once."""
    principal = await require_principal(request)
    text = request.match_info["token_id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise NotFound(f"no token with id {text!r}")
    info = await services(request).auth.revoke(principal, int(text))
    return web.json_response(text=_out(info).model_dump_json())


@routes.get("/v1/whoami")
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
