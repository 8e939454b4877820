"""The job table: every job kind's handler and every periodic schedule, in one place.

Adding a job kind is an entry in ``registry.jobs.kinds.JobKind``, its handler on a service, and one row
here. Periodic kinds are enqueued with their kind as the dedupe key, so however many daemons share the
database, one of each is queued at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from registry.app.services import Services
from registry.jobs.kinds import JobKind
from registry.jobs.periodic import enqueue_every, run_every
from registry.jobs.worker import Handler
from registry.settings import Settings


def job_handlers(svc: Services) -> dict[str, Handler]:
    """Each job kind's handler, bound to the services that were built before the worker starts."""
    table: dict[str, Handler] = {
        JobKind.FETCH: svc.fetch.handle_fetch,
        JobKind.REPLICATE: svc.replication.replicate,
        JobKind.RECONCILE: svc.replication.reconciler.reconcile,
        JobKind.AUDIT: svc.replication.upkeep.audit,
        JobKind.GC: svc.replication.upkeep.gc,
        JobKind.BLOB_GC: svc.registry.blobs.handle_gc,
        JobKind.VALIDATE: svc.gate.handle_validate,
        JobKind.CURATE: svc.gate.handle_curate,
        JobKind.CURATE_SWEEP: svc.gate.handle_sweep,
        JobKind.IPNS_PUBLISH: svc.ipns.handle_publish,
        JobKind.IPNS_REPUBLISH: svc.ipns.handle_republish,
        JobKind.PIN: svc.pin_replicator.handle,
        JobKind.EVENTS_PRUNE: svc.registry.events.handle_prune,
        JobKind.WEBHOOK_DISPATCH: svc.webhooks.deliverer.handle_dispatch,
        JobKind.WEBHOOK_DELIVER: svc.webhooks.deliverer.handle_deliver,
    }
    missing = set(JobKind) - set(table)
    assert not missing, f"no handler for job kinds {sorted(missing)}"
    return table


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: JobKind
    interval_s: float


def schedules(settings: Settings) -> list[Schedule]:
    """The periodic jobs and how often each is queued."""
    r = settings.replication
    return [
        Schedule(JobKind.RECONCILE, r.reconcile_interval_s),
        Schedule(JobKind.AUDIT, r.audit_interval_s),
        Schedule(JobKind.GC, r.gc_interval_s),
        Schedule(JobKind.BLOB_GC, settings.server.blob_gc_interval_s),
        Schedule(JobKind.CURATE_SWEEP, settings.curation.sweep_interval_s),
        Schedule(JobKind.IPNS_REPUBLISH, settings.ipns.republish_interval_s),
        Schedule(JobKind.EVENTS_PRUNE, settings.events.prune_interval_s),
        Schedule(JobKind.WEBHOOK_DISPATCH, settings.webhooks.dispatch_interval_s),
    ]


@contextlib.asynccontextmanager
async def clocks(svc: Services, settings: Settings) -> AsyncIterator[None]:
    """While open: every periodic job is queued on its schedule, and this daemon checks node health."""
    async with contextlib.AsyncExitStack() as stack:
        for s in schedules(settings):
            await stack.enter_async_context(enqueue_every(svc.queue, s.kind, s.interval_s))
        # Health is checked by every daemon (cheap, and each needs to know), first at once.
        await stack.enter_async_context(
            run_every("node health", svc.replication.check_nodes, settings.replication.health_interval_s)
        )
        yield
