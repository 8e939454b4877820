"""Prometheus metrics at `/metrics`: index state, job queue, requests, validation, bytes, process.

State gauges (packs, replicas, nodes, jobs) are read from the index on each scrape (so every daemon
sharing a database reports the same truth); counters are this process's own: the replication service's
(bytes moved, audits, pushes) in the app's `CollectorRegistry`, and the rest (requests, validations,
upload/ingest/pull bytes, webhooks, event-stream subscribers, ``process_*``) in ``registry.metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry import metrics as process_metrics
from registry.api.auth import require_principal, services
from registry.api.endpoint import endpoint
from registry.api.keys import JOB_QUEUE, METRICS, REPLICATION, SESSIONS
from registry.db.engine import readonly_session
from registry.db.models import Pack, PackState
from registry.errors import Forbidden
from registry.jobs.protocol import QueueStats

routes = web.RouteTableDef()


class _Snapshot(Collector):
    """Gauges from values read just before the scrape (collectors are synchronous, the database is not)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def _gauge(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        g.add_metric(list(key), value)
    return g


async def packs_by_state(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Pack listings by state, every state present (0 when none), so an alert never misses a series."""
    counts = dict.fromkeys((st.value for st in PackState), 0)
    async with readonly_session(sessions) as s:
        for state, n in await s.execute(select(Pack.state, func.count()).group_by(Pack.state)):
            counts[PackState(state).value] = int(n)
    return counts


def snapshot_families(
    nodes: dict[str, int],
    replicas: dict[str, int],
    node_health: dict[str, float],
    stats: QueueStats,
    packs: dict[str, int],
) -> list[Metric]:
    return [
        _gauge(
            "modelpack_packs",
            "Pack listings by state",
            ["state"],
            {(k,): v for k, v in packs.items()},
        ),
        _gauge("modelpack_replicas", "Replicas by state", ["state"], {(k,): v for k, v in replicas.items()}),
        _gauge("modelpack_nodes", "IPFS nodes by state", ["state"], {(k,): v for k, v in nodes.items()}),
        _gauge(
            "modelpack_node_up",
            "1 when the node answered its last health check",
            ["node"],
            {(k,): v for k, v in node_health.items()},
        ),
        _gauge("modelpack_jobs", "Jobs by kind and state", ["kind", "state"], dict(stats.depth.items())),
        _gauge(
            "modelpack_jobs_oldest_queued_age_seconds",
            "Age of the oldest queued job by kind",
            ["kind"],
            {(k,): v for k, v in stats.oldest_queued_age_s.items()},
        ),
    ]


@routes.get("/metrics")
@endpoint("Prometheus metrics", tag="health", responses={200: "text/plain"}, errors=(401, 403))
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition format; needs a token when ``server.metrics_requires_token``."""
    if services(request).metrics_requires_token:
        principal = await require_principal(request)
        if not principal.may_read:
            raise Forbidden("reading metrics needs a token with the read (or publish, admin) scope")
    service = request.app[REPLICATION]
    nodes, replicas = await service.counts()
    health = await service.node_health()
    stats = await request.app[JOB_QUEUE].stats()
    packs = await packs_by_state(request.app[SESSIONS])
    registry = CollectorRegistry()
    registry.register(_Snapshot(snapshot_families(nodes, replicas, health, stats, packs)))
    body = (
        generate_latest(registry)
        + generate_latest(request.app[METRICS])
        + generate_latest(process_metrics.REGISTRY)
    )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
