"""Composition of the replication service from settings (called by the composition root, `registry.app.daemon`).

Kept beside the service so the daemon stays a list of contexts: one HTTP session for every node client,
the credentials key, the service, its metrics registry and its background loops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from pinner.replication.model import Target
from pinner.replication.mover import MoverConfig
from registry.api.keys import BLOCKSTORE, JOB_QUEUE, SESSIONS, WORKER
from registry.ipns.channels import load_kek
from registry.replication.loops import LoopConfig, run_replication_loops
from registry.replication.nodes import ClientFactory, NodeClientConfig, NodeRegistry
from registry.replication.rows import ReplicationConfig, ReplicationCounters
from registry.replication.service import ReplicationService
from registry.settings import Settings


def node_client_config(settings: Settings) -> NodeClientConfig:
    """Budgets of every client the daemon builds for a registered node (``replication.*``)."""
    r = settings.replication
    return NodeClientConfig(
        request_timeout_s=r.request_timeout_s,
        pin_timeout_s=r.pin_timeout_s,
        poll_interval_s=r.poll_interval_s,
        replication_min=r.replication_min,
        replication_max=r.replication_max,
        connect_timeout_s=r.connect_timeout_s,
        max_json_bytes=r.max_json_bytes,
        max_block_bytes=r.node_max_block_bytes,
        stream_chunk_bytes=r.stream_chunk_bytes,
        page_size=r.pinning_service_page_size,
    )


def replication_ctx(
    settings: Settings,
    metrics_key: web.AppKey[CollectorRegistry],
    service_key: web.AppKey[ReplicationService],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        r = settings.replication
        kek = await asyncio.to_thread(load_kek, settings.ipns.key_encryption_key, settings.storage.data_dir)
        http = aiohttp.ClientSession()
        counters = ReplicationCounters()
        nodes = NodeRegistry(app[SESSIONS], kek, allowed_hosts=r.allowed_node_hosts)
        factory = ClientFactory(http, kek, node_client_config(settings))
        service = ReplicationService(
            app[SESSIONS],
            app[BLOCKSTORE],
            factory,
            app[JOB_QUEUE],
            nodes,
            ReplicationConfig(
                target=Target(r.replication_min, r.replication_max),
                down_grace_s=r.node_down_grace_s,
                audit_sample_blocks=r.audit_sample_blocks,
                audit_batch=r.audit_batch,
                gc_retention_s=r.gc_retention_s,
                max_failed_attempts=r.max_failed_attempts,
            ),
            mover_config=MoverConfig(
                per_node_concurrency=r.per_node_concurrency,
                prefer_add=r.prefer_add,
                add_min_bytes=r.add_min_bytes,
            ),
            counters=counters,
        )
        app[metrics_key] = counters.registry
        app[service_key] = service
        loops = asyncio.create_task(
            run_replication_loops(
                service,
                app[JOB_QUEUE],
                LoopConfig(
                    health_interval_s=r.health_interval_s,
                    reconcile_interval_s=r.reconcile_interval_s,
                    audit_interval_s=r.audit_interval_s,
                    gc_interval_s=r.gc_interval_s,
                ),
            ),
            name="replication-loops",
        )
        yield
        loops.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loops
        # In-flight jobs use the node clients: let them finish or release them before the session closes.
        await app[WORKER].stop(settings.server.shutdown_grace_s)
        await http.close()

    return ctx
