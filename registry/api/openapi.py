"""The OpenAPI 3.1 document at ``/openapi.json``, generated from the app's router: every route whose handler
carries an ``@endpoint`` declaration (registry.api.endpoint) becomes an operation, with the parameters, body
model and responses declared there. Built once per application, on the first request for it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from registry.api.endpoint import Body, Endpoint, endpoint, spec_of
from registry.api.keys import OPENAPI_CACHE
from registry.api.schemas import ErrorBody

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"
JSON = "application/json"
CACHE_KEY = "openapi.json"


def operations(app: web.Application) -> list[tuple[str, str, Endpoint]]:
    """``(method, path, declaration)`` of every declared route, in the router's order."""
    out = []
    for route in app.router.routes():
        spec = spec_of(route.handler)
        if spec is not None and route.method != "HEAD":
            out.append((route.method.lower(), route.resource.canonical if route.resource else "", spec))
    return out


def _models(ops: list[Endpoint]) -> tuple[list[type[BaseModel]], list[type[BaseModel]]]:
    outputs: list[type[BaseModel]] = [ErrorBody]
    inputs: list[type[BaseModel]] = []
    for op in ops:
        for r in op.responses.values():
            if isinstance(r, type) and r not in outputs:
                outputs.append(r)
        if isinstance(op.body, type) and op.body not in inputs:
            inputs.append(op.body)
    return outputs, inputs


def _content(r: Body, schema: dict[str, Any] | None = None) -> dict[str, Any] | None:
    if r is None:
        return None
    if isinstance(r, str):
        return {r: {"schema": schema if schema is not None else {}}}
    return {JSON: {"schema": {"$ref": REF.format(model=r.__name__)}}}


def _describe(status: int) -> str:
    return "OK" if status < 300 else "Not modified" if status == 304 else "Error"


def _operation(app: web.Application, op: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, r in op.responses.items():
        entry: dict[str, Any] = {"description": _describe(status)}
        content = _content(r)
        if content:
            entry["content"] = content
        responses[str(status)] = entry
    for status in op.errors:
        responses.setdefault(str(status), {"description": "Error", "content": _content(ErrorBody)})
    item: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": responses,
    }
    if op.params:
        item["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "schema": p.schema_for(app),
            }
            | ({"description": p.description} if p.description else {})
            for p in op.params
        ]
    if op.body is not None:
        raw = {"type": "string", "format": "binary", "maxLength": op.body_max} if op.body_max else None
        item["requestBody"] = {"required": True, "content": _content(op.body, raw)}
    if op.auth:
        item["security"] = [{"bearer": []}]
    return item


def build_document(app: web.Application, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared route of ``app``."""
    declared = operations(app)
    outputs, inputs = _models([op for _, _, op in declared])
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "serialization") for m in outputs if m not in inputs
    ] + [(m, "validation") for m in inputs]
    _, defs = models_json_schema(models, ref_template=REF)
    schemas = defs.get("$defs", {})
    for model in inputs:  # limits that come from the settings (see PublishIn.refine_schema)
        refine = getattr(model, "refine_schema", None)
        if refine is not None:
            refine(app, schemas)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op in declared:
        paths.setdefault(path, {})[method] = _operation(app, op)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "modelpack registry", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


@routes.get("/openapi.json")
@endpoint("This document", tag="health", responses={200: JSON})
async def openapi(request: web.Request) -> web.Response:
    """The document, built on the first request and kept for the life of the application."""
    cache = request.app[OPENAPI_CACHE]
    body = cache.get(CACHE_KEY)
    if body is None:
        body = cache[CACHE_KEY] = json.dumps(build_document(request.app)).encode()
    return web.Response(body=body, content_type=JSON)
