"""The composition root: reads settings, picks concrete classes, wires the app and its background services.

Nothing else in the code base chooses an implementation; everything receives its collaborators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.car import CarLimits
from pinner.gateway import GatewayConfig, gateway_routes
from pinner.unixfs import PipelineConfig
from registry.accounts.auth import AuthService
from registry.api import blobs, health, ipns_gateway, keys_api, models, openapi, packs, pointers, tokens
from registry.api import gate as gate_api
from registry.api import metrics as metrics_api
from registry.api import nodes as nodes_api
from registry.api.context import RegistryServices
from registry.api.keys import (
    BLOCKSTORE,
    ENGINE,
    GATE,
    IPNS_CHANNELS,
    JOB_QUEUE,
    METRICS,
    REGISTRY,
    REPLICATION,
    SERVICES,
    SESSIONS,
    SETTINGS,
    TRUST,
    WORKER,
)
from registry.api.middleware import access_log_middleware, error_middleware
from registry.app.gate_wiring import gate_ctx, gate_handlers
from registry.app.replication_wiring import node_client_config, replication_ctx
from registry.cache import CacheConfig, TtlCache
from registry.db.engine import create_engine, ping, session_factory
from registry.db.migrate import require_current
from registry.errors import RegistryError
from registry.ipns.channel import IpnsRecordConfig
from registry.ipns.channels import (
    REPUBLISH_JOB,
    IpnsChannelConfig,
    IpnsChannels,
    channel_handlers,
    kubo_sinks,
    load_kek,
)
from registry.jobs.periodic import enqueue_every
from registry.jobs.sql import SqlJobQueue
from registry.jobs.worker import Handler, Worker, WorkerConfig
from registry.manifest import ManifestLimits
from registry.manifest.names import ModelRef
from registry.packs.blobs import BlobConfig, BlobService
from registry.packs.browse import BrowseService
from registry.packs.fetch import FetchConfig, ShardFetchService, fetch_handlers
from registry.packs.pointers import PointerService
from registry.packs.publish import PublishService
from registry.replication.loops import replication_handlers
from registry.replication.shard_fetch import NodeShardFetcher
from registry.settings import Settings
from registry.trust.key_registry import TrustConfig
from registry.trust.policies import TrustService

log = logging.getLogger("modelpack.daemon")

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]
SHARD_FETCH = web.AppKey("shard_fetch", ShardFetchService)


def _database_ctx(settings: Settings) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url,
            pool_size=settings.database.pool_size,
            connect_timeout_s=settings.database.connect_timeout_s,
            echo=settings.database.echo,
        )
        try:
            await ping(engine)
            await require_current(engine)
        except BaseException:
            await engine.dispose()
            raise
        app[ENGINE] = engine
        app[SESSIONS] = session_factory(engine)
        yield
        await engine.dispose()

    return ctx


def _jobs_ctx(settings: Settings, handlers: dict[str, Handler]) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        j = settings.jobs
        queue = SqlJobQueue(
            app[SESSIONS],
            lease_s=j.lease_s,
            max_attempts=j.max_attempts,
            backoff_base_s=j.backoff_base_s,
            backoff_max_s=j.backoff_max_s,
        )
        app[JOB_QUEUE] = queue
        worker = Worker(
            queue,
            handlers,
            WorkerConfig(
                concurrency=j.workers,
                poll_interval_s=j.poll_interval_s,
                heartbeat_s=j.heartbeat_s,
                kind_concurrency={"validate": settings.validation.concurrency},
            ),
        )
        app[WORKER] = worker
        if j.workers > 0 and handlers:
            worker.start()
        yield
        # Stop taking jobs; let in-flight ones finish within the grace period, then release their leases.
        await worker.stop(settings.server.shutdown_grace_s)

    return ctx


def blockstore_config(settings: Settings) -> FsBlockstoreConfig:
    """The embedded store's config: ``storage.*``, the ``unixfs.*`` pipeline and the ``limits.car_*`` sizes."""
    u, lim = settings.unixfs, settings.limits
    return FsBlockstoreConfig(
        fsync=settings.storage.fsync,
        pipeline=PipelineConfig(
            batch_bytes=u.pipeline_batch_bytes, max_in_flight=u.pipeline_max_in_flight, workers=u.hash_workers
        ),
        ingest_flush_bytes=settings.storage.ingest_flush_bytes,
        car_limits=CarLimits(
            max_header_bytes=lim.car_max_header_bytes,
            max_block_bytes=lim.car_max_block_bytes,
            max_roots=lim.car_max_roots,
        ),
    )


def ipns_channel_config(settings: Settings) -> IpnsChannelConfig:
    ipns = settings.ipns
    return IpnsChannelConfig(
        records=IpnsRecordConfig(ipns.validity_s, ipns.ttl_s, ipns.republish_before_s),
        publish_latest=ipns.publish_latest,
        republish_interval_s=ipns.republish_interval_s,
        served_cache_s=ipns.served_cache_s,
        served_cache_entries=ipns.served_cache_entries,
    )


def _blockstore_ctx(settings: Settings) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = blockstore_config(settings)
        app[BLOCKSTORE] = await asyncio.to_thread(FsBlockstore, settings.storage.data_dir / "blocks", config)
        yield

    return ctx


def _trust_ctx(settings: Settings) -> CleanupCtx:
    """Key registry, trust policy and IPNS channels; a loop that enqueues the republish sweep."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = ipns_channel_config(settings)
        kek = await asyncio.to_thread(load_kek, settings.ipns.key_encryption_key, settings.storage.data_dir)
        t = settings.trust
        app[TRUST] = TrustService(
            app[SESSIONS],
            TrustConfig(
                past_revocation_slack_s=t.past_revocation_slack_s,
                max_policy_keys=t.max_policy_keys,
                max_policy_publishers=t.max_policy_publishers,
                max_reason_len=t.max_reason_len,
            ),
        )
        kubo = node_client_config(settings).kubo()
        app[IPNS_CHANNELS] = IpnsChannels(
            app[SESSIONS], kek, app[JOB_QUEUE], config, sinks=lambda node: kubo_sinks(node, kubo)
        )
        async with enqueue_every(app[JOB_QUEUE], REPUBLISH_JOB, config.republish_interval_s):
            yield

    return ctx


def _registry_ctx(settings: Settings) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        lim = settings.limits
        limits = ManifestLimits(
            manifest_max_bytes=lim.manifest_max_bytes,
            max_shards=lim.max_shards,
            filename_max_len=lim.filename_max_len,
            string_max_len=lim.string_max_len,
            json_max_depth=lim.json_max_depth,
            pack_max_bytes=lim.pack_max_bytes,
        )
        sessions = app[SESSIONS]
        cache = CacheConfig(
            ttl_s=settings.server.read_cache_ttl_s, max_entries=settings.server.read_cache_entries
        )
        pointer_svc = PointerService(
            sessions, on_moved=app[IPNS_CHANNELS].on_pointer_moved, cache=TtlCache(cache)
        )
        nodes = NodeShardFetcher(sessions, node_client_config(settings).kubo())
        pack_json: TtlCache[str, bytes] = TtlCache(cache)

        def on_changed(ref: ModelRef, cid: str) -> None:
            pointer_svc.forget_model(ref)
            pack_json.invalidate(cid)

        app[SHARD_FETCH] = ShardFetchService(
            sessions,
            app[BLOCKSTORE],
            nodes,
            app[JOB_QUEUE],
            FetchConfig(pack_max_bytes=lim.pack_max_bytes),
            on_moved=app[IPNS_CHANNELS].on_pointer_moved,
            on_changed=on_changed,
        )
        app[REGISTRY] = RegistryServices(
            auth=AuthService(sessions),
            blobs=BlobService(sessions, app[BLOCKSTORE], BlobConfig(settings.server.max_upload_bytes)),
            publish=PublishService(
                sessions,
                app[JOB_QUEUE],
                limits,
                on_moved=app[IPNS_CHANNELS].on_pointer_moved,
                on_published=pointer_svc.forget_model,
                nodes=nodes,
                max_detached=lim.max_detached_signatures,
            ),
            browse=BrowseService(sessions),
            pointers=pointer_svc,
            limits=limits,
            read_requires_token=settings.server.read_requires_token,
            pack_json=pack_json,
            page_size_default=min(lim.page_size_default, lim.page_size_max),
            page_size_max=lim.page_size_max,
            publish_body_slack_bytes=lim.publish_body_slack_bytes,
        )
        yield

    return ctx


def build_app(settings: Settings) -> web.Application:
    """The whole daemon as one aiohttp application (also what the tests run)."""
    app = web.Application(
        middlewares=[access_log_middleware, error_middleware],
        client_max_size=settings.server.max_json_body_bytes,
    )
    app[SETTINGS] = settings
    app[SERVICES] = {}
    handlers: dict[str, Handler] = {}
    handlers.update(channel_handlers(lambda: app[IPNS_CHANNELS]))
    handlers.update(replication_handlers(lambda: app.get(REPLICATION)))
    handlers.update(gate_handlers(lambda: app[GATE]))
    handlers.update(fetch_handlers(lambda: app[SHARD_FETCH]))
    app.cleanup_ctx.append(_database_ctx(settings))
    app.cleanup_ctx.append(_jobs_ctx(settings, handlers))
    app.cleanup_ctx.append(_blockstore_ctx(settings))
    app.cleanup_ctx.append(_trust_ctx(settings))
    app.cleanup_ctx.append(replication_ctx(settings, METRICS, REPLICATION))
    app.cleanup_ctx.append(_registry_ctx(settings))
    app.cleanup_ctx.append(gate_ctx(settings, GATE))
    app.add_routes(health.routes)
    for module in (
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
    ):
        app.add_routes(module.routes)
    gateway = GatewayConfig(write_buffer_bytes=settings.server.gateway_write_buffer_bytes)
    app.add_routes(gateway_routes(_OpenedBlockstore(app), gateway))
    return app


class _OpenedBlockstore:
    """The gateway's routes are built before startup; this hands them the store the startup opens."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app[BLOCKSTORE], name)


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
    app = build_app(settings)
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
