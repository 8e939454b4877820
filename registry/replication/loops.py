"""The replication service's clocks: node health checks in-process, and periodic reconcile/audit/gc jobs.

Health is checked by every daemon (cheap, and each needs to know); reconcile, audit and gc are queued
with a dedupe key, so however many daemons share the database, one of each is queued at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from registry.jobs.protocol import ClaimedJob, JobQueue, RetryJob
from registry.jobs.worker import Handler
from registry.replication.service import ReplicationService

log = logging.getLogger("modelpack.replication")


@dataclass(frozen=True)
class LoopConfig:
    health_interval_s: float = 30.0
    reconcile_interval_s: float = 300.0
    audit_interval_s: float = 3600.0
    gc_interval_s: float = 3600.0
    tick_s: float = 1.0  # granularity of the scheduler

    def __post_init__(self) -> None:
        if (
            min(self.health_interval_s, self.reconcile_interval_s, self.audit_interval_s, self.gc_interval_s)
            <= 0
        ):
            raise ValueError("replication loop intervals must be positive")


async def run_replication_loops(service: ReplicationService, queue: JobQueue, config: LoopConfig) -> None:
    """Runs until cancelled. Says once at start whether the embedded blockstore is the only replica."""
    try:
        if await service.embedded_only():
            log.info(
                "no IPFS node configured: the embedded blockstore is the one replica (target 1); "
                "add nodes with `modelpack node add`"
            )
    except Exception:
        log.exception("could not read the node registry")
    loop = asyncio.get_running_loop()
    due = {"health": 0.0, "reconcile": loop.time() + config.reconcile_interval_s}
    due |= {"audit": loop.time() + config.audit_interval_s, "gc": loop.time() + config.gc_interval_s}
    intervals = {
        "health": config.health_interval_s,
        "reconcile": config.reconcile_interval_s,
        "audit": config.audit_interval_s,
        "gc": config.gc_interval_s,
    }
    while True:
        now = loop.time()
        for what, at in list(due.items()):
            if now < at:
                continue
            due[what] = now + intervals[what]
            try:
                if what == "health":
                    await service.check_nodes()
                else:
                    await queue.enqueue(what, {}, dedupe_key=what)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database or a node may be briefly away; next round tries again
                log.exception("replication %s round failed", what)
        await asyncio.sleep(config.tick_s)


def replication_handlers(get: Callable[[], ReplicationService | None]) -> dict[str, Handler]:
    """Job handlers that find the service when a job runs (the worker starts before the service exists)."""

    def make(kind: str) -> Handler:
        async def handle(job: ClaimedJob) -> None:
            service = get()
            if service is None:
                raise RetryJob("the replication service is still starting", delay_s=1.0)
            await service.handlers()[kind](job)

        return handle

    return {kind: make(kind) for kind in ("replicate", "reconcile", "audit", "gc")}
