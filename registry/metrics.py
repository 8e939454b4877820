"""The daemon's own Prometheus metrics: one process-wide registry that any layer may record into.

This module sits at the bottom of the import layers (it imports nothing from ``registry``), so the API,
the gate, the packs services, webhooks and the event stream can all call the small ``record_*`` functions
below. ``GET /metrics`` (``registry.api.metrics``) exports ``REGISTRY`` after the gauges it reads from the
database on each scrape.

Counters and histograms here are this process's own (several daemons sharing a database each export
theirs; Prometheus sums them). Every label is bounded: routes are the aiohttp route templates, methods a
fixed set, and free-form results (verdicts, webhook results) are capped by ``BoundedLabel``.

Names (the client library appends ``_total`` to counters):

- ``modelpack_http_requests_total{route,method,status}`` and
  ``modelpack_http_request_duration_seconds{route,method,status}`` (histogram); ``route`` is the matched
  route's template, e.g. ``/v1/packs/{cid}``, or ``unmatched``;
- ``modelpack_validation_duration_seconds`` (histogram), ``modelpack_validations_total{verdict}``;
- ``modelpack_upload_bytes_total``, ``modelpack_ingest_bytes_total{source}``, ``modelpack_pull_bytes_total{via}``;
- ``modelpack_webhook_deliveries_total{result}``, ``modelpack_sse_subscribers``;
- ``process_*`` (CPU seconds, resident memory, open and max fds, start time) from the client library.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)
OTHER = "other"  # the label value past a BoundedLabel's cap, and of a method outside METHODS
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
VALIDATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


class BoundedLabel:
    """A label's values, at most ``cap`` distinct ones (each cut to ``max_chars``); later ones read ``other``."""

    def __init__(self, cap: int = 32, max_chars: int = 64) -> None:
        self._cap = cap
        self._max_chars = max_chars
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        value = str(value)[: self._max_chars] or OTHER
        if value in self._seen:
            return value
        if len(self._seen) >= self._cap:
            return OTHER
        self._seen.add(value)
        return value


# -- HTTP requests ---------------------------------------------------------------------------------


class _Series:
    __slots__ = ("buckets", "count", "total")

    def __init__(self, n: int) -> None:
        self.buckets = [0] * n  # non-cumulative: the last one is +Inf
        self.count = 0
        self.total = 0.0


class RequestMetrics(Collector):
    """Request counts and latency histograms by (route template, method, status).

    The hot path (``observe``) is a dict lookup, a bisect over the bucket bounds and three additions: no
    lock. It runs on the event loop, as does the scrape (``collect``), so a scrape reads a consistent view.
    """

    def __init__(self, buckets: tuple[float, ...] = HTTP_BUCKETS) -> None:
        self._bounds = buckets
        self._series: dict[tuple[str, str, str], _Series] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in METHODS else OTHER, str(status))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(len(self._bounds) + 1)
        series.buckets[bisect_left(self._bounds, seconds)] += 1
        series.count += 1
        series.total += seconds

    def collect(self) -> Iterator[Metric]:
        labels = ["route", "method", "status"]
        requests = CounterMetricFamily(
            "modelpack_http_requests", "HTTP requests by route template, method and status", labels=labels
        )
        durations = HistogramMetricFamily(
            "modelpack_http_request_duration_seconds",
            "HTTP request latency (until the handler returned, streamed bodies included)",
            labels=labels,
        )
        les = [*(floatToGoString(b) for b in self._bounds), "+Inf"]
        for key, series in sorted(self._series.items()):
            cumulative, acc = [], 0
            for le, n in zip(les, series.buckets, strict=True):
                acc += n
                cumulative.append((le, float(acc)))
            requests.add_metric(list(key), series.count)
            durations.add_metric(list(key), cumulative, series.total)
        yield requests
        yield durations


HTTP = RequestMetrics()
REGISTRY.register(HTTP)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """One finished HTTP request (called by the API's metrics middleware)."""
    HTTP.observe(route, method, status, seconds)


# -- validation ------------------------------------------------------------------------------------

VALIDATION_SECONDS = Histogram(
    "modelpack_validation_duration_seconds",
    "Validation runs' duration (gathering the shards and the sandbox)",
    buckets=VALIDATION_BUCKETS,
    registry=REGISTRY,
)
VALIDATIONS = Counter("modelpack_validations", "Validation runs by verdict", ["verdict"], registry=REGISTRY)
_verdict = BoundedLabel()


def record_validation(verdict: str, seconds: float) -> None:
    """A validation run finished with ``verdict`` (``pass``, ``smoke_failed``, ``timed_out``, ...)."""
    VALIDATIONS.labels(_verdict(verdict)).inc()
    VALIDATION_SECONDS.observe(max(0.0, seconds))


# -- bytes -----------------------------------------------------------------------------------------

UPLOAD_BYTES = Counter(
    "modelpack_upload_bytes",
    "Bytes received in shard upload bodies (PUT /v1/blobs/{cid}), refused uploads included",
    registry=REGISTRY,
)
INGEST_BYTES = Counter(
    "modelpack_ingest_bytes",
    "Verified bytes committed to the embedded blockstore, by source (upload, fetch)",
    ["source"],
    registry=REGISTRY,
)
PULL_BYTES = Counter(
    "modelpack_pull_bytes",
    "Shard and file bytes served to clients, by route (api: /v1/packs/{cid}/shards/..., gateway: /ipfs/...)",
    ["via"],
    registry=REGISTRY,
)
INGEST_SOURCES = ("upload", "fetch")
PULL_VIAS = ("api", "gateway")
for _source in INGEST_SOURCES:
    INGEST_BYTES.labels(_source)
for _via in PULL_VIAS:
    PULL_BYTES.labels(_via)


def record_upload_bytes(n: int) -> None:
    UPLOAD_BYTES.inc(n)


def record_ingest_bytes(source: str, n: int) -> None:
    """``source`` is one of ``INGEST_SOURCES``."""
    INGEST_BYTES.labels(source if source in INGEST_SOURCES else OTHER).inc(n)


def record_pull_bytes(via: str, n: int) -> None:
    """``via`` is one of ``PULL_VIAS``."""
    PULL_BYTES.labels(via if via in PULL_VIAS else OTHER).inc(n)


# -- webhooks and the event stream -----------------------------------------------------------------

WEBHOOK_DELIVERIES = Counter(
    "modelpack_webhook_deliveries", "Webhook delivery attempts by result", ["result"], registry=REGISTRY
)
SSE_SUBSCRIBERS = Gauge(
    "modelpack_sse_subscribers",
    "Clients connected to the event stream (GET /v1/events/stream)",
    registry=REGISTRY,
)
_webhook_result = BoundedLabel()


def record_webhook_delivery(result: str) -> None:
    """One delivery attempt ended with ``result``: a short fixed word such as ``delivered``, ``failed``
    (a non-2xx answer), ``timed_out``, ``refused`` (connection or redirect) or ``dead`` (out of attempts).
    Keep the set small and fixed: past 32 distinct values, new ones are counted as ``other``."""
    WEBHOOK_DELIVERIES.labels(_webhook_result(result)).inc()


def sse_subscribers_inc() -> None:
    """A client subscribed to the event stream; pair each call with ``sse_subscribers_dec`` (``finally``)."""
    SSE_SUBSCRIBERS.inc()


def sse_subscribers_dec() -> None:
    """A client's event stream ended (closed, dropped, or the daemon stopping)."""
    SSE_SUBSCRIBERS.dec()
