"""A Trustless Gateway subset over a Blockstore: ``GET/HEAD /ipfs/{cid}`` as file bytes (with Range),
one raw block (``?format=raw``) or the whole DAG as a CAR (``?format=car``).

Nothing is served that has not been re-hashed against its CID; a block that fails is quarantined by
the store and the request fails with a 5xx before any byte of it is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiohttp import web
from multiformats import CID

from pinner.blockstore.protocol import Blockstore
from pinner.car import write_car
from pinner.cids import cid_str, parse_cid
from pinner.content_errors import InvalidCid
from pinner.errors import PinnerError

log = logging.getLogger("pinner.gateway")

RAW_TYPE = "application/vnd.ipld.raw"
CAR_TYPE = "application/vnd.ipld.car"
CACHE_CONTROL = "public, max-age=29030400, immutable"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_RANGE_DIGITS_MAX = 19  # 2**63 has 19 digits: no stored file is larger


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Gateway tuning."""

    write_buffer_bytes: int = 1024 * 1024


def error_response(err: PinnerError) -> web.Response:
    """The project's JSON error body for a PinnerError."""
    body = {"error": {"code": err.code, "message": err.message, "details": err.details}}
    return web.Response(
        status=err.http_status, text=json.dumps(body, default=str), content_type="application/json"
    )


def _pick_format(request: web.Request) -> str:
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("raw", "car"):
            raise _BadRequest(f"unsupported format {fmt!r}; use raw or car")
        return fmt
    accept = request.headers.get("Accept", "")
    if RAW_TYPE in accept:
        return "raw"
    if CAR_TYPE in accept:
        return "car"
    return "file"


class _BadRequest(PinnerError):
    """The request is not one this gateway understands."""

    code = "bad_request"
    http_status = 400


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end-exclusive) of a single ``bytes=`` range; None when absent or not a single range."""
    m = _RANGE.match(header.strip())
    if not m:
        return None
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if len(first) > _RANGE_DIGITS_MAX or len(last) > _RANGE_DIGITS_MAX:
        raise _BadRequest(
            f"the Range header {header[:60]!r} has a number longer than {_RANGE_DIGITS_MAX} digits"
        )
    if first == "":
        n = int(last)
        return max(size - n, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    return start, end


def _base_headers(cid: CID, etag: str) -> dict[str, str]:
    return {
        "ETag": etag,
        "X-Ipfs-Path": f"/ipfs/{cid_str(cid)}",
        "X-Ipfs-Roots": cid_str(cid),
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
    }


def gateway_routes(
    store_of: Callable[[web.Request], Blockstore],
    config: GatewayConfig | None = None,
    guard: Callable[[web.Request], Awaitable[None]] | None = None,
    sent: Callable[[int], None] | None = None,
) -> web.RouteTableDef:
    """Routes for ``/ipfs/{cid}`` over the store ``store_of(request)`` gives (add them with ``app.add_routes``).

    The store is looked up per request (typically in ``request.app``), so the routes can be added before
    the application's startup opens it. ``guard(request)``, when given, runs before anything is read
    (files, raw blocks and CARs alike); it refuses a request by raising (the embedding application's
    error handling answers it, or this gateway answers a ``PinnerError``, e.g. ``BlockNotFound`` for content
    the caller may not know exists), e.g. a registry whose reads need a token. ``sent(n)``, when given, is
    told the size of each piece of content body written (an embedding application's byte counter).
    """
    config = config or GatewayConfig()
    routes = web.RouteTableDef()

    @routes.route("HEAD", "/ipfs/{cid}")
    @routes.get("/ipfs/{cid}", allow_head=False)
    async def ipfs_path(request: web.Request) -> web.StreamResponse:
        store = store_of(request)
        try:
            if guard is not None:
                await guard(request)
            cid = parse_cid(request.match_info["cid"])
            fmt = _pick_format(request)
            if fmt == "raw":
                return await _serve_raw(request, store, cid, sent)
            if fmt == "car":
                return await _serve_car(request, store, cid, config, sent)
            return await _serve_file(request, store, cid, config, sent)
        except InvalidCid as e:
            return error_response(e)
        except PinnerError as e:
            if e.http_status >= 500:
                log.error("gateway refused %s: %s", request.path, e.message)
            return error_response(e)

    return routes


def _not_modified(request: web.Request, etag: str, headers: dict[str, str]) -> web.Response | None:
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    return None


async def _serve_raw(
    request: web.Request, store: Blockstore, cid: CID, sent: Callable[[int], None] | None
) -> web.StreamResponse:
    etag = f'"{cid_str(cid)}.raw"'
    headers = _base_headers(cid, etag)
    if (cached := _not_modified(request, etag, headers)) is not None:
        return cached
    data = await asyncio.to_thread(store.get_block, cid)
    headers["Content-Disposition"] = f'attachment; filename="{cid_str(cid)}.bin"'
    if sent is not None and request.method != "HEAD":
        sent(len(data))
    return web.Response(status=200, body=data, headers=headers, content_type=RAW_TYPE)  # HEAD: no body


async def _stream(
    request: web.Request,
    resp: web.StreamResponse,
    pieces: Iterator[bytes],
    first: bytes | None,
    buffer: int,
    sent: Callable[[int], None] | None,
) -> web.StreamResponse:
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    pending = [first] if first else []
    size = len(first) if first else 0
    while True:
        piece = await asyncio.to_thread(next, pieces, None)
        if piece is None:
            break
        pending.append(piece)
        size += len(piece)
        if size >= buffer:
            await resp.write(b"".join(pending))
            if sent is not None:
                sent(size)
            pending, size = [], 0
    if pending:
        await resp.write(b"".join(pending))
        if sent is not None:
            sent(size)
    await resp.write_eof()
    return resp


async def _serve_car(
    request: web.Request,
    store: Blockstore,
    cid: CID,
    config: GatewayConfig,
    sent: Callable[[int], None] | None,
) -> web.StreamResponse:
    etag = f'"{cid_str(cid)}.car"'
    headers = _base_headers(cid, etag)
    if (cached := _not_modified(request, etag, headers)) is not None:
        return cached
    blocks = await asyncio.to_thread(store.iter_dag_blocks, cid)
    pieces = write_car([cid], blocks)
    headers["Content-Disposition"] = f'attachment; filename="{cid_str(cid)}.car"'
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_type = CAR_TYPE
    resp.headers["Content-Type"] = f"{CAR_TYPE}; version=1"
    first = await asyncio.to_thread(lambda: b"".join(_take(pieces, 3)))  # header + the root block, verified
    return await _stream(request, resp, pieces, first, config.write_buffer_bytes, sent)


def _take(pieces: Iterator[bytes], n: int) -> Iterator[bytes]:
    for _ in range(n):
        piece = next(pieces, None)
        if piece is None:
            return
        yield piece


async def _serve_file(
    request: web.Request,
    store: Blockstore,
    cid: CID,
    config: GatewayConfig,
    sent: Callable[[int], None] | None,
) -> web.StreamResponse:
    etag = f'"{cid_str(cid)}"'
    headers = _base_headers(cid, etag)
    if (cached := _not_modified(request, etag, headers)) is not None:
        return cached
    size = await asyncio.to_thread(store.file_size, cid)
    headers["Accept-Ranges"] = "bytes"
    status, start, end = 200, 0, size
    if "Range" in request.headers:
        rng = _parse_range(request.headers["Range"], size)
        if rng is not None:
            start, end = rng
            if start >= size or start >= end:
                headers["Content-Range"] = f"bytes */{size}"
                return web.Response(status=416, headers=headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    pieces = await asyncio.to_thread(store.iter_file_bytes, cid, start, end)
    # Read (and verify) the first piece before any header goes out, so corruption there is a clean 5xx.
    first = await asyncio.to_thread(next, pieces, None) if request.method != "HEAD" else None
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_type = "application/octet-stream"
    resp.content_length = end - start
    return await _stream(request, resp, pieces, first, config.write_buffer_bytes, sent)
