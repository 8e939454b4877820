"""Rendered pages for anonymous readers, kept for ``server.read_cache_ttl_s`` (the JSON API's read cache bound),
and dropped at once when this process commits an event (a pack, pointer, node... changed); changes made by
another daemon show within the TTL. Only 200 answers to requests without a token (header or cookie) are kept,
so nothing rendered for one reader is served to another."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from registry.api.keys import REGISTRY
from registry.cache import TtlCache
from registry.events import store as events
from registry.web.session import COOKIE

Entry = tuple[bytes, dict[str, str]]
PAGE_CACHE: web.AppKey[TtlCache[str, Entry]] = web.AppKey("modelpack_page_cache", TtlCache)
WAKER: web.AppKey[Callable[[], None]] = web.AppKey("modelpack_page_cache_waker")
_DROPPED = ("Content-Length", "Date", "Server")


def setup(app: web.Application) -> None:
    """The cache is made at startup, once the registry's services (and their read-cache settings) exist."""

    async def start(app: web.Application) -> None:
        read_cache = app[REGISTRY].pack_json.config  # the read cache's TTL and size
        cache: TtlCache[str, Entry] = TtlCache(read_cache)
        app[PAGE_CACHE] = cache
        app[WAKER] = lambda: cache.invalidate_where(lambda _key: True)
        events.add_waker(app[WAKER])

    async def stop(app: web.Application) -> None:
        if WAKER in app:
            events.remove_waker(app[WAKER])

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def _cache(request: web.Request) -> TtlCache[str, Entry] | None:
    return request.config_dict.get(PAGE_CACHE)


def cache_key(request: web.Request) -> str | None:
    """The key of an anonymous GET whose page may be cached, else None."""
    if request.method != "GET" or "Authorization" in request.headers or COOKIE in request.cookies:
        return None
    return request.path_qs


def cached(request: web.Request) -> web.Response | None:
    key = cache_key(request)
    cache = _cache(request) if key is not None else None
    hit = cache.get(key) if cache is not None and key is not None else None
    if hit is None:
        return None
    body, headers = hit
    return web.Response(body=body, headers=headers)


def keep(request: web.Request, resp: web.StreamResponse) -> None:
    key = cache_key(request)
    if key is None or resp.status != 200 or not isinstance(resp, web.Response):
        return
    body = resp.body
    cache = _cache(request)
    if cache is None or not isinstance(body, bytes | bytearray):
        return
    headers = {k: v for k, v in resp.headers.items() if k not in _DROPPED}
    cache.put(key, (bytes(body), headers))
