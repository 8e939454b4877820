"""Typed application keys for the resources the composition root opens (see registry.app.daemon)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from pinner.blockstore import FsBlockstore
    from registry.api.context import RegistryServices
    from registry.gate.validation import ValidationService
    from registry.ipns.channels import IpnsChannels
    from registry.jobs.sql import SqlJobQueue
    from registry.jobs.worker import Worker
    from registry.packs.fetch import ShardFetchService
    from registry.replication.service import ReplicationService
    from registry.trust.policies import TrustService

ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
JOB_QUEUE: web.AppKey[SqlJobQueue] = web.AppKey("job_queue")
WORKER: web.AppKey[Worker] = web.AppKey("worker")
# the generated OpenAPI document, built on its first request (the app is frozen by then; the dict is not)
OPENAPI_CACHE: web.AppKey[dict[str, bytes]] = web.AppKey("openapi_cache")
BLOCKSTORE: web.AppKey[FsBlockstore] = web.AppKey("blockstore")
REGISTRY: web.AppKey[RegistryServices] = web.AppKey("registry_services")
TRUST: web.AppKey[TrustService] = web.AppKey("trust")
IPNS_CHANNELS: web.AppKey[IpnsChannels] = web.AppKey("ipns_channels")
REPLICATION: web.AppKey[ReplicationService] = web.AppKey("replication")
METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics")
GATE: web.AppKey[ValidationService] = web.AppKey("gate")
SHARD_FETCH: web.AppKey[ShardFetchService] = web.AppKey("shard_fetch")
