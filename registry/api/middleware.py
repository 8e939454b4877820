"""One place where errors become JSON, every request becomes one structured log line and one metrics sample."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from registry.metrics import UNMATCHED, observe_request

log = logging.getLogger("modelpack.http")
access = logging.getLogger("modelpack.access")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "unprocessable",
    429: "too_many_requests",
}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return web.Response(
        status=status,
        text=json.dumps(body, default=str),
        content_type="application/json",
        headers=headers or None,
    )


def _is_domain_error(e: BaseException) -> bool:
    # RegistryError, PinnerError and their subclasses all carry these two class attributes.
    return isinstance(getattr(type(e), "code", None), str) and isinstance(
        getattr(type(e), "http_status", None), int
    )


def _error_answer(request: web.Request, e: Exception) -> web.Response:
    """The JSON error response for what a handler raised (an HTTPException of 400 and up, or any error)."""
    if isinstance(e, web.HTTPException):
        code = _HTTP_CODES.get(e.status, "http_error")
        message = e.reason if e.text in (None, "", f"{e.status}: {e.reason}") else (e.text or e.reason)
        return error_response(e.status, code, message, headers=_keep_headers(e))
    if _is_domain_error(e):
        status: int = getattr(type(e), "http_status")  # noqa: B009
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, e)
        err_code: str = getattr(type(e), "code")  # noqa: B009
        return error_response(status, err_code, getattr(e, "message", str(e)), getattr(e, "details", None))
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=e)
    return error_response(500, "internal_error", "internal error; the server log has the details")


def _keep_headers(e: web.HTTPException) -> dict[str, str]:
    keep = {}
    for h in ("Allow", "WWW-Authenticate", "Content-Range", "Retry-After"):
        if h in e.headers:
            keep[h] = e.headers[h]
    return keep


CLIENT_CLOSED = 499  # the status a request is counted under when the client went away mid-request


def outer_middleware(*, access_log: bool) -> Middleware:
    """The one middleware of the API (one layer: each costs a frame per request on the hot reads).

    Errors become JSON (an HTTPException under 400, a redirect, passes through; one already in our JSON shape
    too); then the request is counted under its route template (``/v1/packs/{cid}``), never its raw path, with
    the status the client got, and with ``access_log`` one structured line is written.
    """

    @web.middleware
    async def outer(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            try:
                resp = await handler(request)
            except web.HTTPException as e:
                if e.status < 400 or (
                    e.content_type == "application/json" and e.text and e.text.startswith('{"error"')
                ):
                    raise
                resp = _error_answer(request, e)
            except Exception as e:
                resp = _error_answer(request, e)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            seconds = time.perf_counter() - start
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else UNMATCHED
            observe_request(route, request.method, status, seconds)
            if access_log:
                access.info(
                    json.dumps(
                        {
                            "method": request.method,
                            "path": request.path,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 2),
                            "remote": request.remote,
                        }
                    )
                )

    return outer
