"""Pointers over HTTP: resolve (the hot path, with an ETag), compare-and-swap set (If-Match), history."""

from __future__ import annotations

from aiohttp import web
from pydantic import TypeAdapter

from registry.api import formats
from registry.api.auth import read_gate, require_principal, services
from registry.api.endpoint import CURSOR, LIMIT, MODEL, NS, READ_ERRORS, TAG, Param, endpoint, read_body
from registry.api.packs import model_ref
from registry.api.pagination import decode_cursor, encode_cursor, page_limit
from registry.api.schemas import PointerChangeOut, PointerHistoryPage, PointerIn, PointerList, PointerOut
from registry.errors import BadRequest
from registry.names import check_tag, normalize_cid
from registry.packs.pointers import ANY, PointerView

routes = web.RouteTableDef()
POINTER_BODY_MAX = 8 * 1024
IF_MATCH = rf'^(?:W/)?"?(?:{formats.CID[1:-1]})"?$'


def _out(p: PointerView) -> PointerOut:
    return PointerOut.model_validate(p, from_attributes=True)


# The resolve hot path serializes the view itself: the same fields, in the same order, as PointerOut (a test
# holds them equal), without validating a model first.
POINTER_JSON = TypeAdapter(PointerView)


def _expected(request: web.Request) -> object:
    """If-Match: the CID the pointer must hold; If-None-Match: * : it must not exist yet."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        value = if_match.strip().removeprefix("W/").strip('"')
        return normalize_cid(value)
    if request.headers.get("If-None-Match", "").strip() == "*":
        return None
    return ANY


@routes.get("/v1/models/{namespace}/{model}/pointers")
@endpoint(
    "Pointers of a model",
    tag="pointers",
    responses={200: PointerList},
    params=(NS, MODEL),
    errors=READ_ERRORS,
)
async def list_pointers(request: web.Request) -> web.Response:
    await read_gate(request)
    items = await services(request).pointers.list_tags(model_ref(request))
    return web.json_response(text=PointerList(items=[_out(p) for p in items]).model_dump_json())


@routes.get("/v1/models/{namespace}/{model}/pointers/{tag}")
@endpoint(
    "Resolve ns/model@tag",
    tag="pointers",
    responses={200: PointerOut},
    params=(NS, MODEL, TAG),
    errors=READ_ERRORS,
    operation_id="resolvePointer",
)
async def resolve(request: web.Request) -> web.Response:
    """``ns/model@tag`` -> pack CID; the ETag is the CID (use it as If-Match to move the pointer)."""
    await read_gate(request)
    svc = services(request)
    p = await svc.pointers.resolve(model_ref(request), check_tag(request.match_info["tag"]))
    body = svc.rendered.get(("pointer", p.namespace, p.model, p.tag), p, lambda: POINTER_JSON.dump_json(p))
    headers = {"Content-Type": "application/json; charset=utf-8", "ETag": f'"{p.cid}"'}
    return web.Response(body=body, headers=headers)


@routes.put("/v1/models/{namespace}/{model}/pointers/{tag}")
@endpoint(
    "Move a pointer (CAS with If-Match)",
    tag="pointers",
    responses={200: PointerOut},
    params=(
        NS,
        MODEL,
        TAG,
        Param(
            "If-Match", "header", {"type": "string", "pattern": IF_MATCH}, "the CID the pointer must hold now"
        ),
        Param("If-None-Match", "header", {"type": "string"}, "'*': only create"),
    ),
    body=PointerIn,
    body_max=POINTER_BODY_MAX,
    auth=True,
    errors=(400, 401, 403, 404, 409, 412, 413),
)
async def set_pointer(request: web.Request) -> web.Response:
    """Moves the pointer; with If-Match it moves only if it still holds that CID (else 412)."""
    principal = await require_principal(request)
    ref = model_ref(request)
    tag = check_tag(request.match_info["tag"])
    body = await read_body(request, PointerIn, "pointer")
    cid = normalize_cid(body.cid)
    p = await services(request).pointers.set(
        principal, ref, tag, cid, expected=_expected(request), reason=body.reason
    )
    headers = {"Content-Type": "application/json; charset=utf-8", "ETag": f'"{p.cid}"'}
    return web.Response(body=POINTER_JSON.dump_json(p), headers=headers)


async def _history(request: web.Request, tag: str | None) -> web.Response:
    await read_gate(request)
    svc = services(request)
    limit = page_limit(request, svc)
    cur = decode_cursor(request.query.get("cursor"), 1)
    if cur is not None and not isinstance(cur[0], int):
        raise BadRequest("cursor is not one this API returned", cursor=str(cur[0])[:40])
    rows = await svc.pointers.history(
        model_ref(request), tag, after_id=int(cur[0]) if cur else None, limit=limit + 1
    )
    page = PointerHistoryPage(
        items=[PointerChangeOut.model_validate(r, from_attributes=True) for r in rows[:limit]],
        next_cursor=encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None,
    )
    return web.json_response(text=page.model_dump_json())


@routes.get("/v1/models/{namespace}/{model}/pointers/{tag}/history")
@endpoint(
    "History of one pointer",
    tag="pointers",
    responses={200: PointerHistoryPage},
    params=(NS, MODEL, TAG, CURSOR, LIMIT),
    errors=READ_ERRORS,
    operation_id="pointerHistory",
)
async def tag_history(request: web.Request) -> web.Response:
    """Who moved this pointer, when, from which CID to which, and why; newest first."""
    return await _history(request, check_tag(request.match_info["tag"]))


@routes.get("/v1/models/{namespace}/{model}/history")
@endpoint(
    "History of every pointer",
    tag="pointers",
    responses={200: PointerHistoryPage},
    params=(NS, MODEL, CURSOR, LIMIT),
    errors=READ_ERRORS,
    operation_id="modelPointerHistory",
)
async def model_history(request: web.Request) -> web.Response:
    """Pointer history of every tag of the model; newest first."""
    return await _history(request, None)
