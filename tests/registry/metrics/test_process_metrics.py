"""``registry.metrics``: bounded labels, the lock-free request histogram, the webhook and event-stream hooks."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from registry import metrics
from tests.registry.metrics.scrape import parse


def test_a_bounded_label_caps_distinct_values_and_their_length() -> None:
    label = metrics.BoundedLabel(cap=3, max_chars=8)
    assert [label(v) for v in ("a", "b", "a", "c", "d", "e", "b")] == [
        "a",
        "b",
        "a",
        "c",
        "other",
        "other",
        "b",
    ]
    assert label("x" * 100) == "other"  # the cap is reached: even a cut value is not a new one
    fresh = metrics.BoundedLabel(cap=3, max_chars=8)
    assert fresh("y" * 100) == "y" * 8 and fresh("") == "other"


def test_request_histogram_buckets_are_cumulative_with_count_and_sum() -> None:
    stats = metrics.RequestMetrics(buckets=(0.1, 1.0))
    registry = CollectorRegistry()
    registry.register(stats)
    for seconds in (0.05, 0.1, 0.5, 2.0, 3.0):
        stats.observe("/v1/packs/{cid}", "GET", 200, seconds)
    stats.observe("/v1/packs/{cid}", "BREW", 418, 0.01)
    got = parse(generate_latest(registry).decode())
    key = {"route": "/v1/packs/{cid}", "method": "GET", "status": "200"}
    bucket = "modelpack_http_request_duration_seconds_bucket"
    assert [got.get(bucket, le=le, **key) for le in ("0.1", "1.0", "+Inf")] == [2, 3, 5]
    assert got.get("modelpack_http_request_duration_seconds_count", **key) == 5
    assert got.get("modelpack_http_request_duration_seconds_sum", **key) == pytest.approx(5.65)
    assert got.get("modelpack_http_requests_total", **key) == 5
    assert (
        got.get("modelpack_http_requests_total", route="/v1/packs/{cid}", method="other", status="418") == 1
    )
    assert got.label_values("modelpack_http_requests_total", "method") == {"GET", "other"}


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_webhook_deliveries_and_sse_subscribers_are_recorded() -> None:
    before = _sample("modelpack_webhook_deliveries_total", result="delivered")
    metrics.record_webhook_delivery("delivered")
    metrics.record_webhook_delivery("delivered")
    assert _sample("modelpack_webhook_deliveries_total", result="delivered") - before == 2
    subscribers = _sample("modelpack_sse_subscribers")
    metrics.sse_subscribers_inc()
    metrics.sse_subscribers_inc()
    metrics.sse_subscribers_dec()
    assert _sample("modelpack_sse_subscribers") - subscribers == 1
    metrics.sse_subscribers_dec()
    assert _sample("modelpack_sse_subscribers") == subscribers


def test_unknown_byte_sources_and_verdicts_stay_bounded() -> None:
    before = _sample("modelpack_ingest_bytes_total", source="other")
    metrics.record_ingest_bytes("<script>", 5)
    assert _sample("modelpack_ingest_bytes_total", source="other") - before == 5
    assert _sample("modelpack_ingest_bytes_total", source="<script>") == 0
    count = _sample("modelpack_validation_duration_seconds_count")
    metrics.record_validation("pass", -1.0)  # a clock step never makes a negative duration
    assert _sample("modelpack_validation_duration_seconds_count") - count == 1
    assert _sample("modelpack_validation_duration_seconds_bucket", le="1.0") >= 1
