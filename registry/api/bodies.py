"""Reading JSON request bodies under a byte limit with the manifest parser's strictness (no duplicate keys, no NaN)."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from model_core.format.strict_json import parse_json_strict
from registry.errors import BadRequest, PayloadTooLarge


async def read_limited(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``max_bytes``."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(
            f"the body is {request.content_length} bytes, more than the limit of {max_bytes}"
        )
    buf = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > max_bytes:
            raise PayloadTooLarge(f"the body is more than the limit of {max_bytes} bytes")
    return bytes(buf)


M = TypeVar("M", bound=BaseModel)


async def read_model(request: web.Request, model: type[M], what: str, max_bytes: int) -> M:
    """The body parsed into ``model``; a 400 names the first bad field, a 413 a body over ``max_bytes``."""
    raw = await read_limited(request, max_bytes)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as e:
        raise _bad(e, what) from None


def validate(model: type[M], data: Any, what: str) -> M:
    """Decoded JSON checked through ``model``; a 400 names the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _bad(e, what) from None


def _bad(e: ValidationError, what: str) -> BadRequest:
    err = e.errors()[0]
    where = ".".join(map(str, err["loc"])) or "(root)"
    return BadRequest(f"{what} body: {where}: {err['msg']}", field=where)


async def read_json_object(request: web.Request, max_bytes: int, max_depth: int, what: str) -> dict[str, Any]:
    raw = await read_limited(request, max_bytes)
    data = parse_json_strict(raw, max_bytes=max_bytes, max_depth=max_depth, what=what)
    if not isinstance(data, dict):
        raise BadRequest(f"the {what} must be a JSON object")
    return data


def optional_str(data: dict[str, Any], key: str, max_len: int = 1024) -> str | None:
    v = data.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > max_len:
        raise BadRequest(f"{key!r} must be a string of at most {max_len} characters", field=key)
    return v
