"""The daemon: one aiohttp application whose single startup context opens every service, then the worker.

``registry.app`` is the composition root: the only reader of ``Settings`` (through ``app.configs``) and
the only chooser of classes (``app.services``); the job table is ``app.jobs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from pinner.gateway import GatewayConfig, gateway_routes
from registry.api import (
    blobs,
    health,
    hfhub,
    ipns_gateway,
    keys_api,
    models,
    openapi,
    packs,
    pointers,
    tokens,
    webhooks_api,
)
from registry.api import events as events_api
from registry.api import gate as gate_api
from registry.api import metrics as metrics_api
from registry.api import nodes as nodes_api
from registry.api.blob_reads import blob_read_gate
from registry.api.keys import (
    BLOCKSTORE,
    ENGINE,
    GATE,
    IPNS_CHANNELS,
    JOB_QUEUE,
    METRICS,
    OPENAPI_CACHE,
    REGISTRY,
    REPLICATION,
    SESSIONS,
    SHARD_FETCH,
    TRUST,
    WORKER,
)
from registry.api.middleware import outer_middleware
from registry.api.psa import PSA, PsaServices, psa_app
from registry.app import configs
from registry.app.heap import freeze_startup_heap, keep_freed_memory
from registry.app.jobs import clocks, job_handlers
from registry.app.services import Services, open_services
from registry.errors import RegistryError
from registry.jobs.worker import Worker
from registry.metrics import record_pull_bytes
from registry.settings import Settings
from registry.web import setup_web

log = logging.getLogger("modelpack.daemon")

ROUTE_MODULES = (
    health,
    blobs,
    packs,
    models,
    pointers,
    tokens,
    keys_api,
    ipns_gateway,
    openapi,
    nodes_api,
    metrics_api,
    gate_api,
    events_api,
    webhooks_api,
    hfhub,  # last: /{ns}/{model}/resolve/... and /api/* (aiohttp tries longer fixed prefixes first)
)
# The paths fleets and pipelines poll, added before the rest. aiohttp tries the routes that share a fixed prefix
# (``/v1/models``: eight of them) in the order they were added, and each one that fails to match costs a
# coroutine and a regex: the pointer resolve came fifth. Hoisting cannot shadow a route:
# tests/registry/api/test_routes.py resolves a path of every route and asserts it reaches its own handler.
HOT_ROUTES = (
    ("GET", "/v1/models/{namespace}/{model}/pointers/{tag}"),
    ("PUT", "/v1/models/{namespace}/{model}/pointers/{tag}"),  # the same resource: keep the two together
    ("GET", "/v1/models"),
    ("GET", "/v1/packs/{cid}"),
)


def _rank(d: web.AbstractRouteDef) -> int:
    key = (d.method, d.path) if isinstance(d, web.RouteDef) else None
    return HOT_ROUTES.index(key) if key in HOT_ROUTES else len(HOT_ROUTES)


def route_defs() -> list[web.AbstractRouteDef]:
    """Every module's routes: those in ``HOT_ROUTES`` first, in its order; then the rest in module order."""
    return sorted((d for module in ROUTE_MODULES for d in module.routes), key=_rank)  # a stable sort


def _expose(app: web.Application, svc: Services) -> None:
    """What the HTTP routes reach through ``request.app``."""
    app[ENGINE] = svc.engine
    app[SESSIONS] = svc.sessions
    app[JOB_QUEUE] = svc.queue
    app[BLOCKSTORE] = svc.store
    app[TRUST] = svc.trust
    app[IPNS_CHANNELS] = svc.ipns
    app[REPLICATION] = svc.replication
    app[METRICS] = svc.counters.registry
    app[REGISTRY] = svc.registry
    app[GATE] = svc.gate
    app[SHARD_FETCH] = svc.fetch
    app[PSA] = PsaServices(svc.pins, svc.node_addresses, svc.pins.config)
    app[webhooks_api.WEBHOOKS] = svc.webhooks


def _running(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Every service first; then the worker on the job table and the clocks; on exit, the reverse."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings) as svc:
            _expose(app, svc)
            worker = Worker(svc.queue, job_handlers(svc), configs.worker_config(settings))
            app[WORKER] = worker
            if await svc.replication.embedded_only():
                log.info(
                    "no IPFS node configured: the embedded blockstore is the one replica (target 1); "
                    "add nodes with `modelpack node add`"
                )
            async with clocks(svc, settings):
                if settings.jobs.workers > 0:
                    worker.start()
                try:
                    yield
                finally:
                    # Stop taking jobs; in-flight ones finish within the grace period or are released,
                    # before the node session and the database close.
                    await worker.stop(settings.server.shutdown_grace_s)
                    await svc.registry.events.close()

    return ctx


async def _end_event_streams(app: web.Application) -> None:
    """Open SSE streams end at shutdown (clients resume with Last-Event-ID) instead of holding it up."""
    if REGISTRY in app:
        app[REGISTRY].events.end_streams()


async def _tune_heap(_app: web.Application) -> None:
    """The daemon's own process only (registry.app.heap): malloc keeps what it frees, and the startup heap is
    set aside from the collector once every service is open."""
    keep_freed_memory()
    freeze_startup_heap()


def build_app(settings: Settings, *, tune_heap: bool = False) -> web.Application:
    """The whole daemon as one aiohttp application (also what the tests run, without ``tune_heap``: the
    daemon's process, and only it, sets its startup heap aside from the garbage collector)."""
    app = web.Application(
        middlewares=[outer_middleware(access_log=settings.server.access_log)],
        client_max_size=settings.server.max_json_body_bytes,
    )
    app[OPENAPI_CACHE] = {}
    app.cleanup_ctx.append(_running(settings))
    app.on_shutdown.append(_end_event_streams)
    app.add_routes(route_defs())
    app.add_subapp(settings.pinning.base_path, psa_app())
    gateway = GatewayConfig(write_buffer_bytes=settings.server.gateway_write_buffer_bytes)
    pulled = functools.partial(record_pull_bytes, "gateway")
    app.add_routes(
        gateway_routes(lambda request: request.app[BLOCKSTORE], gateway, guard=blob_read_gate, sent=pulled)
    )
    setup_web(app)  # the HTML pages at / and under /ui/
    if tune_heap:
        app.on_startup.append(_tune_heap)  # after the services' startup context (the first hook)
    return app


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


async def serve(settings: Settings, *, ready: Callable[[str], Any] | None = None) -> None:
    """Run until SIGTERM/SIGINT; then stop taking work, finish or release jobs, close the database."""
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings, tune_heap=True)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await runner.setup()
    except RegistryError:
        await runner.cleanup()
        raise
    site = web.TCPSite(
        runner, settings.server.host, settings.server.port, shutdown_timeout=settings.server.shutdown_grace_s
    )
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise RegistryError(
            f"cannot listen on {settings.server.host}:{settings.server.port}: {e.strerror or e}"
            " (is another daemon running? pick another port with --listen HOST:PORT)"
        ) from None
    addrs = runner.addresses
    host, port = addrs[0][0], addrs[0][1]
    url = f"http://{host}:{port}"
    if ready:
        ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: no new jobs; finishing in-flight work")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")
