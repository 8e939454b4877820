"""Browsing models: list and search by namespace and name prefix, and the versions (packs) of one model."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from registry.api import formats
from registry.api.auth import read_gate, services
from registry.api.endpoint import CURSOR, LIMIT, MODEL, NS, READ_ERRORS, Param, endpoint
from registry.api.packs import model_ref
from registry.api.pagination import decode_cursor, encode_cursor, page_limit
from registry.api.schemas import ModelOut, ModelPage, PackPage, PackSummaryOut
from registry.errors import BadRequest
from registry.names import check_name

routes = web.RouteTableDef()
PREFIX_MAX_LEN = 64


@routes.get("/v1/models")
@endpoint(
    "Models by namespace and/or name prefix",
    tag="models",
    responses={200: ModelPage},
    params=(
        Param("namespace", "query", {"type": "string", "pattern": formats.NAME}),
        Param("prefix", "query", {"type": "string", "maxLength": PREFIX_MAX_LEN}),
        CURSOR,
        LIMIT,
    ),
    errors=(400, 401),
)
async def list_models(request: web.Request) -> web.Response:
    """Models, optionally of one namespace and/or whose name starts with ``prefix``."""
    await read_gate(request)
    svc = services(request)
    limit = page_limit(request, svc)
    ns = request.query.get("namespace")
    if ns is not None:
        check_name(ns, "namespace")
    prefix = request.query.get("prefix")
    if prefix is not None and len(prefix) > PREFIX_MAX_LEN:
        raise BadRequest(f"prefix is longer than {PREFIX_MAX_LEN} characters", prefix=prefix[:PREFIX_MAX_LEN])
    cur = decode_cursor(request.query.get("cursor"), 2)
    after = (str(cur[0]), str(cur[1])) if cur else None
    rows = await svc.browse.list_models(namespace=ns, prefix=prefix, after=after, limit=limit + 1)

    def render() -> bytes:
        page = ModelPage(
            items=[
                ModelOut(namespace=m.namespace, name=m.name, created_at=m.created_at) for m in rows[:limit]
            ],
            next_cursor=encode_cursor([rows[limit - 1].namespace, rows[limit - 1].name])
            if len(rows) > limit
            else None,
        )
        return page.model_dump_json().encode()

    body = svc.rendered.get(("models", ns, prefix, after, limit), rows, render)
    return web.Response(body=body, content_type="application/json", charset="utf-8")


@routes.get("/v1/models/{namespace}/{model}/packs")
@endpoint(
    "Versions of a model, newest first",
    tag="models",
    responses={200: PackPage},
    params=(NS, MODEL, CURSOR, LIMIT),
    errors=READ_ERRORS,
    operation_id="listPacks",
)
async def list_versions(request: web.Request) -> web.Response:
    """The model's packs, newest first."""
    await read_gate(request)
    svc = services(request)
    ref = model_ref(request)
    limit = page_limit(request, svc)
    cur = decode_cursor(request.query.get("cursor"), 2)
    after = None
    if cur:
        try:
            after = (datetime.fromisoformat(str(cur[0])), str(cur[1]))
        except ValueError:
            raise BadRequest("cursor is not one this API returned", cursor=str(cur[0])[:40]) from None
    rows = await svc.browse.list_versions(ref, after=after, limit=limit + 1)
    items = [PackSummaryOut.model_validate(p, from_attributes=True) for p in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = encode_cursor([last.created_at.isoformat(), last.cid])
    return web.json_response(text=PackPage(items=items, next_cursor=nxt).model_dump_json())
