"""Composition of the gate from settings (called by the composition root, ``registry.app.daemon``).

Kept beside the gate so the daemon stays a list of contexts: the curation rule on the real trust and
replication checks, the validation service on the daemon's blockstore and nodes, and the sweep loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import Any

from aiohttp import web

from pinner.replication.model import Target
from registry.api.keys import BLOCKSTORE, IPNS_CHANNELS, JOB_QUEUE, REGISTRY, SESSIONS
from registry.app.replication_wiring import node_client_config
from registry.gate.config import gate_config
from registry.gate.curation import CurationService
from registry.gate.rule import RegistryReplication, registry_trust
from registry.gate.shards import NodeShardFetcher
from registry.gate.validation import CURATE_JOB, SWEEP_JOB, VALIDATE_JOB, ValidationService
from registry.jobs.periodic import enqueue_every
from registry.jobs.protocol import ClaimedJob
from registry.settings import Settings

log = logging.getLogger("modelpack.gate")
JobHandler = Callable[[ClaimedJob], Coroutine[Any, Any, None]]


def gate_handlers(get: Callable[[], ValidationService]) -> dict[str, JobHandler]:
    """Job handlers that find the gate when they run (it is built after the worker's table)."""

    async def validate(job: ClaimedJob) -> None:
        await get().handle_validate(job)

    async def curate(job: ClaimedJob) -> None:
        await get().handle_curate(job)

    async def sweep(job: ClaimedJob) -> None:
        await get().handle_sweep(job)

    return {VALIDATE_JOB: validate, CURATE_JOB: curate, SWEEP_JOB: sweep}


def gate_ctx(
    settings: Settings, key: web.AppKey[ValidationService]
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = gate_config(settings)
        sessions = app[SESSIONS]
        curation = CurationService(
            sessions,
            config,
            registry_trust,
            RegistryReplication(
                Target(config.replication_min, config.replication_max),
                timedelta(seconds=config.node_down_grace_s),
            ),
            on_moved=app[IPNS_CHANNELS].on_pointer_moved,
            on_changed=app[REGISTRY].pointers.forget_model,
        )
        queue = app[JOB_QUEUE]
        app[key] = ValidationService(
            sessions,
            config,
            curation,
            queue,
            store=app[BLOCKSTORE],
            fetcher=NodeShardFetcher(sessions, node_client_config(settings).kubo()),
        )

        async with enqueue_every(queue, SWEEP_JOB, config.sweep_interval_s):
            yield

    return ctx
