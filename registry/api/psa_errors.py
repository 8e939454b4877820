"""Errors on the Pinning Service API paths in the spec's shape: ``{"error": {"reason", "details"}}``."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger("modelpack.psa")

# The spec's reasons for its own statuses; any other domain error keeps its stable code, upper-cased.
REASONS = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 409: "INSUFFICIENT_FUNDS"}


def psa_error(status: int, reason: str, details: str) -> web.Response:
    body = {"error": {"reason": reason, "details": details[:2000]}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _reason(status: int, code: str | None) -> str:
    if code and code not in ("bad_request", "unauthorized", "not_found", "conflict", "insufficient_funds"):
        return code.upper()
    return REASONS.get(status, (code or "error").upper())


@web.middleware
async def psa_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return psa_error(e.status, REASONS.get(e.status, "HTTP_" + str(e.status)), e.reason)
    except Exception as e:
        code = getattr(type(e), "code", None)
        status = getattr(type(e), "http_status", None)
        if isinstance(code, str) and isinstance(status, int):
            if status >= 500:
                log.error("%s %s failed: %s", request.method, request.path, e)
            return psa_error(status, _reason(status, code), str(getattr(e, "message", e)))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return psa_error(500, "INTERNAL_SERVER_ERROR", "internal error; the server log has the details")
