"""What each handler declares about itself: ``@endpoint(...)`` records its summary, parameters (with their real
constraints), request body model and responses on the handler; registry.api.openapi builds the document from
those records, and ``read_body`` parses a request through the very model the handler declared.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel

from registry.api import formats
from registry.api.bodies import read_model
from registry.api.keys import REGISTRY
from registry.api.pagination import CURSOR_MAX_LEN

Handler = Callable[..., Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
M = TypeVar("M", bound=BaseModel)
# A response: a pydantic model (JSON), a media type (raw bytes), or None (no body).
Body = type[BaseModel] | str | None
# A parameter schema, or a function of the app for limits that come from the settings.
Schema = dict[str, Any] | Callable[[web.Application], dict[str, Any]]
SPEC_ATTR = "__endpoint__"


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: Schema
    description: str = ""
    required: bool = False

    def schema_for(self, app: web.Application) -> dict[str, Any]:
        return self.schema(app) if callable(self.schema) else self.schema


@dataclass(frozen=True)
class Endpoint:
    summary: str
    tag: str
    responses: Mapping[int, Body]
    params: tuple[Param, ...] = ()
    body: Body = None
    body_max: int = 0
    auth: bool = False
    errors: tuple[int, ...] = ()
    operation_id: str = ""


def endpoint(
    summary: str,
    *,
    tag: str,
    responses: Mapping[int, Body],
    params: tuple[Param, ...] = (),
    body: Body = None,
    body_max: int = 0,
    auth: bool = False,
    errors: tuple[int, ...] = (),
    operation_id: str = "",
) -> Callable[[H], H]:
    """Declare a handler's operation; apply it under the ``@routes.<method>(path)`` line."""

    def mark(handler: H) -> H:
        op_id = operation_id or _camel(handler.__name__)
        spec = Endpoint(summary, tag, dict(responses), params, body, body_max, auth, errors, op_id)
        setattr(handler, SPEC_ATTR, spec)
        return handler

    return mark


def spec_of(handler: object) -> Endpoint | None:
    spec = getattr(handler, SPEC_ATTR, None)
    return spec if isinstance(spec, Endpoint) else None


async def read_body(request: web.Request, model: type[M], what: str) -> M:
    """The body parsed through ``model``, which must be the body model the route's handler declares."""
    spec = spec_of(request.match_info.route.handler)
    if spec is None or spec.body is not model or not spec.body_max:
        raise TypeError(f"{request.match_info.route.handler!r} does not declare the body {model.__name__}")
    return await read_model(request, model, what, spec.body_max)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(w.capitalize() for w in rest)


def _page_max(app: web.Application) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": app[REGISTRY].page_size_max}


NS = Param("namespace", "path", {"type": "string", "pattern": formats.NAME}, required=True)
MODEL = Param("model", "path", {"type": "string", "pattern": formats.NAME}, required=True)
TAG = Param("tag", "path", {"type": "string", "pattern": formats.TAG}, required=True)
CID = Param("cid", "path", {"type": "string", "pattern": formats.CID}, "a CID (any multibase)", required=True)
CURSOR = Param(
    "cursor",
    "query",
    {"type": "string", "pattern": formats.BASE64URL, "maxLength": CURSOR_MAX_LEN},
    "next_cursor of the previous page (opaque: only cursors this API returned are taken)",
)
LIMIT = Param("limit", "query", _page_max, "page size (default and maximum from the settings)")
ETAG_NONE = Param("If-None-Match", "header", {"type": "string"}, "an ETag you hold: 304 when unchanged")
READ_ERRORS = (400, 401, 404)
