"""Opaque keyset cursors (base64url JSON of the last row's sort key) and the page-size rule."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from registry.api.context import RegistryServices
from registry.errors import BadRequest

CURSOR_MAX_LEN = 512


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None, arity: int) -> list[Any] | None:
    """The sort key a cursor carries, or None for the first page; BadRequest when it is not ours."""
    if not text:
        return None
    try:
        if len(text) > CURSOR_MAX_LEN:
            raise ValueError("too long")
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError("wrong shape")
        if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            raise ValueError("wrong types")
        if any(isinstance(v, int) and not -(2**63) < v < 2**63 for v in values):
            raise ValueError("out of range")  # no key is that large; the database would fail on it
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(f"cursor {text[:40]!r} is not one this API returned", cursor=text[:40]) from None
    return values


def page_limit(request: web.Request, svc: RegistryServices) -> int:
    text = request.query.get("limit")
    if text is None:
        return svc.page_size_default
    if not (text.isascii() and text.isdigit() and len(text) <= 18) or not 1 <= int(text) <= svc.page_size_max:
        raise BadRequest(
            f"limit {text[:40]!r} must be an integer from 1 to {svc.page_size_max}", limit=text[:40]
        )
    return int(text)
