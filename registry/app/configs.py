"""Settings -> each component's own frozen config. The only place a ``Settings`` value reaches a component.

Every function here is pure; a component's config defaults equal the settings' defaults (a test checks).
"""

from __future__ import annotations

from model_core.format.pack import ManifestLimits
from pinner.blockstore import FsBlockstoreConfig
from pinner.car import CarLimits
from pinner.replication.model import Target
from pinner.replication.mover import MoverConfig
from pinner.unixfs import PipelineConfig
from registry.cache import CacheConfig
from registry.events.service import EventsConfig
from registry.gate.config import GateConfig, SandboxBudget
from registry.ipns.channel import IpnsRecordConfig
from registry.ipns.channels import IpnsChannelConfig
from registry.jobs.kinds import JobKind
from registry.jobs.worker import WorkerConfig
from registry.packs.blobs import BlobConfig
from registry.packs.fetch import FetchConfig
from registry.pinning.config import PinningConfig
from registry.replication.clients import NodeClientConfig
from registry.replication.rows import ReplicationConfig
from registry.settings import Settings
from registry.trust.key_registry import TrustConfig
from registry.webhooks.config import WebhookConfig


def manifest_limits(settings: Settings) -> ManifestLimits:
    lim = settings.limits
    return ManifestLimits(
        manifest_max_bytes=lim.manifest_max_bytes,
        max_shards=lim.max_shards,
        filename_max_len=lim.filename_max_len,
        string_max_len=lim.string_max_len,
        json_max_depth=lim.json_max_depth,
        pack_max_bytes=lim.pack_max_bytes,
    )


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


def read_cache_config(settings: Settings) -> CacheConfig:
    return CacheConfig(ttl_s=settings.server.read_cache_ttl_s, max_entries=settings.server.read_cache_entries)


def metrics_requires_token(settings: Settings) -> bool:
    """``server.metrics_requires_token``; unset, /metrics follows ``server.read_requires_token``."""
    own = settings.server.metrics_requires_token
    return settings.server.read_requires_token if own is None else own


def blob_config(settings: Settings) -> BlobConfig:
    """Uploads: size, per-publisher quota and concurrency, the daemon's cap, read deadlines, collection."""
    sv = settings.server
    return BlobConfig(
        max_upload_bytes=sv.max_upload_bytes,
        upload_quota_bytes=sv.upload_quota_bytes,
        max_uploads_per_publisher=sv.max_uploads_per_publisher,
        max_uploads_in_flight=sv.max_uploads_in_flight,
        idle_timeout_s=sv.upload_idle_timeout_s,
        total_timeout_s=sv.upload_timeout_s,
        retry_after_s=sv.upload_retry_after_s,
        unreferenced_grace_s=sv.unreferenced_blob_grace_s,
    )


def fetch_config(settings: Settings) -> FetchConfig:
    return FetchConfig(pack_max_bytes=settings.limits.pack_max_bytes)


def ipns_channel_config(settings: Settings) -> IpnsChannelConfig:
    ipns = settings.ipns
    return IpnsChannelConfig(
        records=IpnsRecordConfig(ipns.validity_s, ipns.ttl_s, ipns.republish_before_s),
        publish_latest=ipns.publish_latest,
        republish_interval_s=ipns.republish_interval_s,
        served_cache_s=ipns.served_cache_s,
        served_cache_entries=ipns.served_cache_entries,
    )


def trust_config(settings: Settings) -> TrustConfig:
    t = settings.trust
    return TrustConfig(
        past_revocation_slack_s=t.past_revocation_slack_s,
        max_policy_keys=t.max_policy_keys,
        max_policy_publishers=t.max_policy_publishers,
        max_reason_len=t.max_reason_len,
    )


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


def replication_config(settings: Settings) -> ReplicationConfig:
    r = settings.replication
    return ReplicationConfig(
        target=Target(r.replication_min, r.replication_max),
        down_grace_s=r.node_down_grace_s,
        audit_sample_blocks=r.audit_sample_blocks,
        audit_batch=r.audit_batch,
        gc_retention_s=r.gc_retention_s,
        max_failed_attempts=r.max_failed_attempts,
    )


def pinning_config(settings: Settings) -> PinningConfig:
    p, r = settings.pinning, settings.replication
    low = p.replication_min or min(r.replication_min, p.max_replication)
    high = max(p.replication_max or min(r.replication_max, p.max_replication), low)
    return PinningConfig(
        max_pins=p.max_pins,
        max_bytes=p.max_bytes,
        pin_timeout_s=p.pin_timeout_s,
        target=Target(low, min(high, max(p.max_replication, low))),
        max_replication=max(p.max_replication, high),
    )


def mover_config(settings: Settings) -> MoverConfig:
    r = settings.replication
    return MoverConfig(
        per_node_concurrency=r.per_node_concurrency, prefer_add=r.prefer_add, add_min_bytes=r.add_min_bytes
    )


def sandbox_budget(settings: Settings) -> SandboxBudget:
    """Limits of the validation sandbox, with the manifest limits publish applied (it refuses no more, no less)."""
    v, lim = settings.validation, settings.limits
    return SandboxBudget(
        memory_bytes=v.memory_bytes,
        cpu_seconds=v.cpu_seconds,
        wall_seconds=v.wall_seconds,
        time_budget_s=v.smoke_time_budget_s,
        threads=v.threads,
        runtime_overhead_bytes=v.runtime_overhead_bytes,
        manifest_max_bytes=lim.manifest_max_bytes,
        max_shards=lim.max_shards,
        header_max_bytes=lim.safetensors_header_max_bytes,
        filename_max_len=lim.filename_max_len,
        sandbox_user=v.sandbox_user,
        worker_python=v.worker_python,
    )


def gate_config(settings: Settings, **overrides: object) -> GateConfig:
    """The gate's config (``validation.*``, ``curation.*``, ``replication.*`` and the sandbox's limits)."""
    v, c, r = settings.validation, settings.curation, settings.replication
    values: dict[str, object] = {
        "budget": sandbox_budget(settings),
        "auto_validate": v.auto_validate,
        "on_degrade": c.on_degrade,
        "work_dir": settings.storage.data_dir / "validation",
        "replication_min": r.replication_min,
        "replication_max": r.replication_max,
        "node_down_grace_s": r.node_down_grace_s,
        "sweep_interval_s": c.sweep_interval_s,
        "sweep_batch": c.sweep_batch,
        "curate_retry_s": c.retry_s,
        "curate_max_attempts": c.max_attempts,
        "fetch_timeout_s": v.fetch_timeout_s,
        "max_environment_failures": v.max_environment_failures,
        "max_queued_per_publisher": v.max_queued_per_publisher,
    }
    values.update(overrides)
    return GateConfig(**values)  # type: ignore[arg-type]


def worker_config(settings: Settings) -> WorkerConfig:
    j = settings.jobs
    return WorkerConfig(
        concurrency=j.workers,
        poll_interval_s=j.poll_interval_s,
        heartbeat_s=j.heartbeat_s,
        lease_s=j.lease_s,
        kind_concurrency={JobKind.VALIDATE: settings.validation.concurrency},
    )


def events_config(settings: Settings) -> EventsConfig:
    e = settings.events
    return EventsConfig(
        retention_s=e.retention_s,
        poll_interval_s=e.poll_interval_s,
        max_subscribers=e.max_subscribers,
        queue_size=e.subscriber_queue,
        heartbeat_s=e.heartbeat_s,
    )


def webhook_config(settings: Settings) -> WebhookConfig:
    """``webhooks.*``; the delivery log is kept as long as events (``events.retention_s``)."""
    w = settings.webhooks
    return WebhookConfig(
        allowed_hosts=w.allowed_hosts,
        timeout_s=w.timeout_s,
        max_attempts=w.max_attempts,
        backoff_base_s=w.backoff_base_s,
        backoff_max_s=w.backoff_max_s,
        disable_after_failures=w.disable_after_failures,
        dispatch_interval_s=w.dispatch_interval_s,
        secret_grace_s=w.secret_grace_s,
        max_endpoints=w.max_endpoints,
        log_retention_s=settings.events.retention_s,
    )
