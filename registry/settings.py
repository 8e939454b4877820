"""One settings object for the whole daemon: defaults, a TOML file, ``MODELPACK_*`` env overrides.

Every budget or limit an attacker could probe lives here, in one place, validated on load.
Nested keys are set from the environment with a double underscore:
``MODELPACK_SERVER__PORT=9000``, ``MODELPACK_DATABASE__URL=postgresql+asyncpg://...``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from registry.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_PORT = 8740  # not Kubo's 5001 (RPC) or 8080 (gateway)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"  # listen address
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)  # 0: any free port
    max_json_body_bytes: int = Field(2 * MiB, ge=1 * KiB)  # largest JSON request body
    max_upload_bytes: int = Field(64 * GiB, ge=1)  # largest blob upload
    # Per publisher: stored bytes it uploaded that no pack references (counted while uploads stream).
    upload_quota_bytes: int = Field(256 * GiB, ge=1)
    max_uploads_per_publisher: int = Field(4, ge=1, le=10_000)  # uploads in flight per publisher (429)
    max_uploads_in_flight: int = Field(64, ge=1, le=100_000)  # uploads in flight in this daemon (503)
    upload_idle_timeout_s: float = Field(60.0, gt=0, le=86_400)  # a body silent this long is cut (408)
    upload_timeout_s: float = Field(6 * 3600.0, gt=0, le=7 * 86_400)  # a whole upload's budget (408)
    upload_retry_after_s: int = Field(5, ge=1, le=3600)  # Retry-After of a 429/503 upload
    unreferenced_blob_grace_s: float = Field(24 * 3600.0, ge=0)  # uploads no pack uses are deleted after this
    blob_gc_interval_s: float = Field(3600.0, gt=0)  # how often unreferenced uploads are collected
    read_requires_token: bool = False  # reads need a token too
    metrics_requires_token: bool | None = None  # /metrics needs a token; unset: as read_requires_token
    read_cache_ttl_s: float = Field(1.0, ge=0)  # pointer resolve / pack detail; 0 turns the cache off
    read_cache_entries: int = Field(10_000, ge=1, le=10_000_000)  # per read cache
    # A token's principal is reused this long: a revocation here applies at once, one made by another
    # daemon on the same database within this bound; 0 reads the token on every request.
    token_cache_ttl_s: float = Field(5.0, ge=0, le=300)
    gateway_write_buffer_bytes: int = Field(1 * MiB, ge=4 * KiB, le=256 * MiB)  # /ipfs/ response batching
    shutdown_grace_s: float = Field(30.0, gt=0)  # in-flight requests and jobs get this long on SIGTERM
    access_log: bool = True  # one line per request on stderr


class DatabaseSettings(_Section):
    url: str | None = None  # default: SQLite file in the data dir
    connect_timeout_s: float = Field(5.0, gt=0)  # connecting to the database
    pool_size: int = Field(10, ge=1, le=200)  # connections (Postgres)
    echo: bool = False  # log every SQL statement

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError(
                f"unsupported database url {v!r}: use sqlite+aiosqlite:///PATH or "
                "postgresql+asyncpg://USER@HOST:PORT/DB"
            )
        return v


class StorageSettings(_Section):
    data_dir: Path = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "modelpack"
    fsync: bool = True  # fsync blocks and folders before acknowledging
    ingest_flush_bytes: int = Field(4 * MiB, ge=4 * KiB, le=1 * GiB)  # upload bytes buffered per write


class UnixfsSettings(_Section):
    hash_workers: int = Field(2, ge=1, le=64)  # hashing threads
    pipeline_batch_bytes: int = Field(4 * MiB, ge=64 * KiB, le=1 * GiB)  # bytes hashed per worker batch
    pipeline_max_in_flight: int = Field(3, ge=1, le=64)  # batches queued per worker


class LimitsSettings(_Section):
    manifest_max_bytes: int = Field(1 * MiB, ge=1 * KiB)  # also passed to the validation sandbox
    max_shards: int = Field(4096, ge=1)  # also passed to the validation sandbox
    filename_max_len: int = Field(255, ge=1, le=4096)  # also passed to the validation sandbox
    string_max_len: int = Field(4096, ge=16)  # any manifest string
    json_max_depth: int = Field(32, ge=2, le=256)  # nesting of any JSON body
    pack_max_bytes: int = Field(1024 * GiB, ge=1)  # sum of a pack's shards
    # Largest safetensors header; also passed to the validation sandbox.
    safetensors_header_max_bytes: int = Field(100_000_000, ge=1 * KiB)
    page_size_default: int = Field(50, ge=1)  # list endpoints
    page_size_max: int = Field(500, ge=1)  # list endpoints
    publish_body_slack_bytes: int = Field(64 * KiB, ge=1 * KiB, le=16 * MiB)  # signatures, tag, reason
    max_detached_signatures: int = Field(16, ge=1, le=1024)  # per publish
    # CAR import (POST /ipfs/ and the blockstore's CAR reader): a block is at most 2 MiB + framing.
    car_max_block_bytes: int = Field(2 * MiB + 1 * KiB, ge=1 * KiB, le=64 * MiB)
    car_max_header_bytes: int = Field(64 * KiB, ge=64, le=16 * MiB)  # CAR header
    car_max_roots: int = Field(64, ge=1, le=65_536)  # roots of one CAR


class JobSettings(_Section):
    lease_s: float = Field(60.0, gt=0)  # a job whose worker died is claimed again after this
    heartbeat_s: float = Field(15.0, gt=0)  # must be shorter than lease_s
    poll_interval_s: float = Field(1.0, gt=0)  # idle workers look for jobs this often
    max_attempts: int = Field(8, ge=1)  # then the job is dead, its last error kept
    backoff_base_s: float = Field(2.0, gt=0)  # exponential backoff with jitter between attempts
    backoff_max_s: float = Field(600.0, gt=0)  # longest backoff
    workers: int = Field(4, ge=0, le=256)  # concurrent jobs; 0 runs no worker

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> JobSettings:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(
                f"jobs.heartbeat_s ({self.heartbeat_s}) must be shorter than jobs.lease_s ({self.lease_s})"
            )
        return self


class ReplicationSettings(_Section):
    replication_min: int = Field(2, ge=1)  # a pack is curatable with this many healthy replicas
    replication_max: int = Field(3, ge=1)  # replicas placed at most
    per_node_concurrency: int = Field(2, ge=1)  # transfers to one node at a time
    request_timeout_s: float = Field(30.0, gt=0)  # a whole small call to a node; Kubo's `timeout=`
    pin_timeout_s: float = Field(600.0, gt=0)  # no-progress timeout for pin/add
    node_down_grace_s: float = Field(600.0, ge=0)  # a node down this long has its replicas placed elsewhere
    health_interval_s: float = Field(30.0, gt=0)  # node health checks
    reconcile_interval_s: float = Field(300.0, gt=0)  # replica placement repair
    audit_interval_s: float = Field(3600.0, gt=0)  # replica audits
    audit_sample_blocks: int = Field(8, ge=1)  # blocks fetched back per audited replica
    # Nodes may only be added at these hosts.
    allowed_node_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    gc_retention_s: float = Field(7 * 24 * 3600.0, ge=0)  # unreferenced content is kept this long
    gc_interval_s: float = Field(3600.0, gt=0)  # garbage collection runs
    audit_batch: int = Field(64, ge=1)  # replicas audited per audit job
    max_failed_attempts: int = Field(3, ge=1)  # per (unit, node) before placement prefers other nodes
    prefer_add: bool = True  # send a shard with `add` when the node provably rebuilds the same CIDs
    add_min_bytes: int = Field(4 * MiB, ge=0)  # smaller units travel in the one CAR
    # The node clients (Kubo RPC, IPFS Cluster, Pinning Service API):
    connect_timeout_s: float = Field(5.0, gt=0, le=600)  # TCP connect to a node
    max_json_bytes: int = Field(16 * MiB, ge=1 * KiB, le=1 * GiB)  # largest JSON answer read from a node
    poll_interval_s: float = Field(2.0, gt=0, le=3600)  # cluster / pinning-service status polls
    node_max_block_bytes: int = Field(4 * MiB, ge=1 * KiB, le=64 * MiB)  # largest block taken from a node
    stream_chunk_bytes: int = Field(256 * KiB, ge=1 * KiB, le=64 * MiB)  # read size of streamed node answers
    pinning_service_page_size: int = Field(1000, ge=1, le=1000)  # the spec's maximum `limit`

    @model_validator(mode="after")
    def _min_le_max(self) -> ReplicationSettings:
        if self.replication_min > self.replication_max:
            raise ValueError(
                f"replication.replication_min ({self.replication_min}) exceeds "
                f"replication.replication_max ({self.replication_max})"
            )
        return self


class PinningSettings(_Section):
    """The Pinning Service API (issue #14): where it is mounted, per-publisher quotas, the pin deadline."""

    base_path: str = Field("/psa", pattern=r"^/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$")
    max_pins: int = Field(10_000, ge=1)  # live pins per publisher (409 beyond)
    max_bytes: int = Field(1 << 40, ge=1)  # bytes pinned per publisher (409 beyond)
    pin_timeout_s: float = Field(3600.0, gt=0)  # a pin not pinned this long after its request is failed
    replication_min: int | None = Field(None, ge=1)  # default target (None: replication.replication_min)
    replication_max: int | None = Field(None, ge=1)  # default target (None: replication.replication_max)
    max_replication: int = Field(5, ge=1, le=1000)  # the most copies a pin's meta may ask for


class ValidationSettings(_Section):
    auto_validate: bool = True  # validate every published pack
    concurrency: int = Field(1, ge=1)  # validations at once
    memory_bytes: int = Field(8 * GiB, ge=64 * MiB)  # address-space limit of the validation sandbox
    cpu_seconds: int = Field(900, ge=1)  # CPU-time limit of the sandbox
    wall_seconds: float = Field(1200.0, gt=0)  # wall-clock limit of the sandbox
    smoke_time_budget_s: float = Field(300.0, gt=0)  # the smoke suite's budget
    # What the child needs besides the weights (torch, threads, activations); model_core's default too.
    runtime_overhead_bytes: int = Field(2 * GiB, ge=0, le=1024 * GiB)
    threads: int | None = Field(None, ge=1, le=1024)  # torch threads in the child; None: torch's default
    fetch_timeout_s: float = Field(600.0, gt=0)  # reading one shard from a node for validation
    # timed_out / out_of_memory / crashed are retried with backoff; reject after this many in a row
    max_environment_failures: int = Field(3, ge=1, le=100)
    max_queued_per_publisher: int = Field(4, ge=1, le=10000)  # requested validations queued or running
    # When the daemon runs as root the worker runs as this user (if it can start the interpreter and read
    # the packages and the pack; else root is kept and the report says why).
    sandbox_user: str = Field("nobody", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    # The worker's interpreter (same Python version); None: the daemon's, or the host's own when the
    # sandbox user cannot start the daemon's (e.g. a pyenv under a 0700 /root).
    worker_python: str | None = Field(None, min_length=1, max_length=4096)


class IpnsSettings(_Section):
    validity_s: int = Field(48 * 3600, ge=60)  # an IPNS record's validity
    ttl_s: int = Field(3600, ge=1)  # the record's TTL
    republish_before_s: int = Field(24 * 3600, ge=0)  # re-sign records this long before they expire
    publish_latest: bool = False  # also publish `latest` channels (not only `curated`)
    key_encryption_key: str | None = None  # base64 32 bytes; default: a key file in the data dir
    republish_interval_s: float = Field(600.0, gt=0)  # how often records near expiry are looked for
    served_cache_s: float = Field(1.0, ge=0)  # /ipns/{name} answers may be this stale
    served_cache_entries: int = Field(4096, ge=1, le=10_000_000)  # records cached for /ipns/


class CurationSettings(_Section):
    # A curated pack that loses replicas or trust: roll the pointer back, or hold it (flagged).
    on_degrade: Literal["rollback", "hold"] = "rollback"
    sweep_interval_s: float = Field(30.0, gt=0)  # re-check curated packs (replicas, revoked keys)
    retry_s: float = Field(5.0, gt=0)  # a validated pack waiting for its replicas is tried again this often
    sweep_batch: int = Field(200, ge=1, le=100_000)  # packs looked at per sweep and kind
    max_attempts: int = Field(720, ge=1)  # curate retries of one pack; then the sweep alone keeps trying


class TrustSettings(_Section):
    past_revocation_slack_s: float = Field(60.0, ge=0, le=86_400)  # a revocation `at` this near is "now"
    max_policy_keys: int = Field(256, ge=1, le=100_000)  # keys named in one namespace's policy
    max_policy_publishers: int = Field(64, ge=1, le=100_000)  # publishers named in one namespace's policy
    max_reason_len: int = Field(1024, ge=1, le=65_536)  # a revocation's reason


class EventsSettings(_Section):
    retention_s: float = Field(30 * 86_400.0, gt=0)  # events older than this are deleted
    prune_interval_s: float = Field(3600.0, gt=0)  # how often old events are deleted
    poll_interval_s: float = Field(0.5, gt=0, le=60)  # the live stream reads new events this often
    max_subscribers: int = Field(256, ge=1, le=100_000)  # open event streams per daemon (503 beyond)
    subscriber_queue: int = Field(1000, ge=10, le=1_000_000)  # events a slow stream may lag before it is cut
    heartbeat_s: float = Field(15.0, gt=0, le=300)  # an idle stream gets a comment line this often


class WebhooksSettings(_Section):
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")  # endpoint URL hosts ("*": any)
    timeout_s: float = Field(10.0, gt=0, le=300)  # one delivery attempt, connect to last byte
    max_attempts: int = Field(8, ge=1, le=100)  # attempts per delivery; then it is dead
    backoff_base_s: float = Field(5.0, gt=0)  # exponential backoff with jitter between attempts
    backoff_max_s: float = Field(3600.0, gt=0)  # longest wait between attempts
    disable_after_failures: int = Field(20, ge=1, le=100_000)  # failed attempts in a row disable the endpoint
    dispatch_interval_s: float = Field(2.0, gt=0, le=3600)  # new events become deliveries this often
    secret_grace_s: float = Field(3600.0, ge=0, le=30 * 86_400)  # a rotated-out secret still signs this long
    max_endpoints: int = Field(32, ge=1, le=10_000)  # endpoints per namespace


class Settings(BaseSettings):
    """The daemon's whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="MODELPACK_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    unixfs: UnixfsSettings = UnixfsSettings()
    limits: LimitsSettings = LimitsSettings()
    jobs: JobSettings = JobSettings()
    replication: ReplicationSettings = ReplicationSettings()
    pinning: PinningSettings = PinningSettings()
    validation: ValidationSettings = ValidationSettings()
    ipns: IpnsSettings = IpnsSettings()
    curation: CurationSettings = CurationSettings()
    trust: TrustSettings = TrustSettings()
    events: EventsSettings = EventsSettings()
    webhooks: WebhooksSettings = WebhooksSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs (CLI flags) > environment > TOML file (passed in as init defaults by load()).
        return (init_settings, env_settings)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.storage.data_dir / 'index.sqlite3'}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# MODELPACK_* variables that are not settings: the config file, and what the CLI's remote commands read.
_KNOWN_ENV = {"MODELPACK_CONFIG", "MODELPACK_REGISTRY", "MODELPACK_TOKEN", "MODELPACK_NODE_TOKEN"}


def _setting_keys() -> list[tuple[str, str]]:
    """Every (section, key) a setting has."""
    out: list[tuple[str, str]] = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            out.extend((section, key) for key in model.model_fields)
    return out


def _did_you_mean(wanted: str, candidates: dict[str, str], extra: tuple[str, ...] = ()) -> str:
    """``; did you mean X?`` for a mistyped name, or "": the closest whole name, else a name whose last
    part (the key without its section) is the one given or close to it. ``candidates`` maps each name
    to its last part; ``extra`` names are matched whole only."""
    if "__" in wanted:
        tail = wanted.rsplit("__", 1)[-1]
    elif "." in wanted:
        tail = wanted.rsplit(".", 1)[-1]
    else:
        tail = wanted.removeprefix("MODELPACK_")
    bare = {name.removeprefix("MODELPACK_"): name for name in [*candidates, *extra]}
    wanted_bare = wanted.removeprefix("MODELPACK_")
    found = [bare[b] for b in difflib.get_close_matches(wanted_bare, bare, n=1, cutoff=0.85)]
    if not found:
        found = [name for name, last in candidates.items() if last == tail]
    if not found:
        close = difflib.get_close_matches(tail, sorted(set(candidates.values())), n=1, cutoff=0.75)
        found = [name for name, last in candidates.items() if last in close]
    if not found:
        found = [bare[b] for b in difflib.get_close_matches(wanted_bare, bare, n=1, cutoff=0.6)]
    return f"; did you mean {' or '.join(found[:3])}?" if found else ""


def _check_env_names() -> None:
    """Every ``MODELPACK_*`` variable names a setting (or is one of ``_KNOWN_ENV``); else one sentence."""
    keys = _setting_keys()
    by_env = {f"MODELPACK_{s.upper()}__{k.upper()}": k.upper() for s, k in keys}
    fields = {s: {k for s2, k in keys if s2 == s} for s in Settings.model_fields}
    known = tuple(sorted(_KNOWN_ENV))
    for name in sorted(os.environ):
        if not name.startswith("MODELPACK_") or name in _KNOWN_ENV:
            continue
        section, _, rest = name[len("MODELPACK_") :].lower().partition("__")
        key = rest.split("__", 1)[0]
        if section not in Settings.model_fields:
            hint = _did_you_mean(name.upper(), by_env, known)
            raise ConfigError(f"unknown setting in environment variable {name}{hint}")
        if key and fields[section] and key not in fields[section]:
            hint = _did_you_mean(name.upper(), by_env, known)
            raise ConfigError(f"unknown setting '{section}.{key}' in environment variable {name}{hint}")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        env_name = "MODELPACK_" + "__".join(str(p) for p in e["loc"]).upper()
        where = f"environment variable {env_name}" if env_name in os.environ else source
        if e["type"] == "extra_forbidden":
            dotted = {f"{s}.{k}": k for s, k in _setting_keys()} | {s: s for s in Settings.model_fields}
            lines.append(f"unknown setting {key!r} in {where}{_did_you_mean(key, dotted)}")
        elif e["loc"]:
            lines.append(f"bad value for {key!r} in {where}: {e['input']!r} ({e['msg']})")
        else:
            lines.append(f"bad settings in {where}: {e['msg']}")
    return "; ".join(lines)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build settings from a TOML file, then ``MODELPACK_*`` env vars, then explicit overrides.

    Raises:
        ConfigError: with one sentence naming the bad file, key or value.
    """
    file_data: dict[str, Any] = {}
    source = "settings"
    path = config_file or os.environ.get("MODELPACK_CONFIG")
    if path:
        p = Path(path)
        source = f"config file {p}"
        try:
            file_data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    _check_env_names()
    # Environment wins over the file; explicit overrides (CLI flags) win over everything.
    try:
        env_only = Settings()  # validates the environment on its own
        env_set = env_only.model_dump(exclude_unset=True)
        merged = _deep_merge(file_data, env_set)
        merged = _deep_merge(merged, {k: v for k, v in overrides.items() if v is not None})
        return Settings.model_validate(merged) if merged else env_only
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None
