"""Every component limit comes from the one settings object: non-default values reach the components.

The app is built and started with non-default values; each component is then read back through the
app keys (or, for the node clients, through the wiring function the daemon calls).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from multiformats import CID, multihash

from pinner.content_errors import InvalidCar
from pinner.ipfs.cluster import ClusterClient
from pinner.ipfs.kubo import KuboClient
from pinner.ipfs.pinning_service import PinningServiceClient
from pinner.states import NodeKind
from registry.api.keys import BLOCKSTORE, GATE, IPNS_CHANNELS, REGISTRY, TRUST
from registry.app import configs, daemon
from registry.app.daemon import build_app
from registry.db.models import IpfsNode
from registry.errors import ConfigError
from registry.gate.runner import sandbox_command
from registry.replication.clients import ClientFactory
from registry.replication.shard_fetch import NodeShardFetcher
from registry.settings import KiB, MiB, Settings, load_settings

KEK = bytes(32)


def _with(settings: Settings, **sections: dict[str, Any]) -> Settings:
    update = {name: getattr(settings, name).model_copy(update=values) for name, values in sections.items()}
    return settings.model_copy(update=update)


@pytest.fixture
def tuned(settings: Settings) -> Settings:
    return _with(
        settings,
        server={"read_cache_entries": 77, "gateway_write_buffer_bytes": 128 * KiB},
        storage={"ingest_flush_bytes": 256 * KiB},
        unixfs={"pipeline_batch_bytes": 1 * MiB, "pipeline_max_in_flight": 5},
        limits={
            "car_max_block_bytes": 2 * KiB,
            "car_max_header_bytes": 4 * KiB,
            "car_max_roots": 3,
            "publish_body_slack_bytes": 32 * KiB,
            "max_detached_signatures": 3,
            "manifest_max_bytes": 512 * KiB,
            "max_shards": 99,
            "safetensors_header_max_bytes": 5 * MiB,
            "filename_max_len": 120,
        },
        validation={"runtime_overhead_bytes": 3 * 1024**3, "threads": 2, "fetch_timeout_s": 42.0},
        ipns={"republish_interval_s": 123.0, "served_cache_s": 0.5, "served_cache_entries": 11},
        curation={"sweep_batch": 17, "max_attempts": 9},
        trust={"past_revocation_slack_s": 5.0, "max_policy_keys": 8, "max_policy_publishers": 4},
        replication={"request_timeout_s": 7.0, "node_max_block_bytes": 3 * MiB},
    )


async def test_the_started_app_hands_every_component_its_settings(
    tuned: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway_configs: list[Any] = []
    real_routes = daemon.gateway_routes

    def spy(store_of: Any, config: Any = None, **kw: Any) -> Any:
        gateway_configs.append(config)
        return real_routes(store_of, config, **kw)

    monkeypatch.setattr(daemon, "gateway_routes", spy)
    app = build_app(tuned)
    assert [c.write_buffer_bytes for c in gateway_configs] == [128 * KiB]
    async with TestClient(TestServer(app)):
        store = app[BLOCKSTORE].config
        assert store.ingest_flush_bytes == 256 * KiB
        assert (store.pipeline.batch_bytes, store.pipeline.max_in_flight) == (1 * MiB, 5)
        limits = store.car_limits
        assert (limits.max_block_bytes, limits.max_header_bytes, limits.max_roots) == (2 * KiB, 4 * KiB, 3)

        registry = app[REGISTRY]
        assert registry.pack_json.config.max_entries == 77
        assert registry.publish_body_slack_bytes == 32 * KiB
        assert registry.publish.max_detached == 3

        # publish-by-CID fetches and the gate's shard reads share one fetcher on the one node-client
        # factory, which gives every client the replication.* node budgets
        fetcher = registry.publish._nodes
        assert isinstance(fetcher, NodeShardFetcher)
        assert app[GATE]._fetcher is fetcher
        kubo = fetcher.clients.config.kubo()
        assert (kubo.node_timeout, kubo.max_block_size) == (7.0, 3 * MiB)

        ipns = app[IPNS_CHANNELS].config
        assert (ipns.republish_interval_s, ipns.served_cache_s, ipns.served_cache_entries) == (123.0, 0.5, 11)

        trust = app[TRUST].config
        assert (trust.past_revocation_slack_s, trust.max_policy_keys, trust.max_policy_publishers) == (
            5.0,
            8,
            4,
        )

        gate = app[GATE].config
        assert (gate.sweep_batch, gate.curate_max_attempts, gate.fetch_timeout_s) == (17, 9, 42.0)
        budget = gate.budget
        assert (budget.runtime_overhead_bytes, budget.threads) == (3 * 1024**3, 2)
        cmd = sandbox_command(Path("/p"), Path("/r.json"), budget, [])
        flags = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
        assert flags["--overhead-bytes"] == str(3 * 1024**3)
        assert flags["--threads"] == "2"
        assert flags["--manifest-max-bytes"] == str(512 * KiB)
        assert flags["--max-shards"] == "99"
        assert flags["--header-max-bytes"] == str(5 * MiB)
        assert flags["--filename-max-len"] == "120"


async def test_car_import_obeys_the_configured_block_limit(tuned: Settings) -> None:
    from pinner.car import write_car

    data = b"x" * (3 * KiB)  # over the tuned 2 KiB block limit
    cid = CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))
    car = b"".join(write_car([cid], [(cid, data)]))
    app = build_app(tuned)
    async with TestClient(TestServer(app)):
        with pytest.raises(InvalidCar):
            app[BLOCKSTORE].import_car(io.BytesIO(car))


def test_node_clients_get_the_replication_settings(settings: Settings) -> None:
    tuned = _with(
        settings,
        replication={
            "request_timeout_s": 7.0,
            "pin_timeout_s": 90.0,
            "connect_timeout_s": 1.5,
            "max_json_bytes": 2 * MiB,
            "poll_interval_s": 0.25,
            "node_max_block_bytes": 3 * MiB,
            "stream_chunk_bytes": 64 * KiB,
            "pinning_service_page_size": 100,
        },
    )
    config = configs.node_client_config(tuned)
    factory = ClientFactory(None, KEK, config)  # type: ignore[arg-type]  # no call is made
    url = "http://127.0.0.1:5001"
    kubo = factory.backend(IpfsNode(id=1, name="k", url=url, kind=NodeKind.KUBO, auth=None))
    cluster = factory.backend(IpfsNode(id=2, name="c", url=url, kind=NodeKind.CLUSTER, auth=None))
    service = factory.backend(IpfsNode(id=3, name="p", url=url, kind=NodeKind.PINNING_SERVICE, auth=None))
    assert isinstance(kubo, KuboClient)
    assert isinstance(cluster, ClusterClient)
    assert isinstance(service, PinningServiceClient)
    k = kubo.config
    assert (k.node_timeout, k.pin_no_progress_timeout) == (7.0, 90.0)
    assert (k.max_block_size, k.stream_chunk_size) == (3 * MiB, 64 * KiB)
    t = k.timeouts
    assert (t.connect, t.call, t.read, t.max_json_bytes) == (1.5, 7.0, 90.0, 2 * MiB)
    assert (cluster.config.poll_interval, cluster.config.pin_no_progress_timeout) == (0.25, 90.0)
    assert cluster.config.timeouts == t
    assert (service.config.poll_interval, service.config.page_size) == (0.25, 100)
    # The IPNS record sinks and shard sources are the same factory's Kubo clients, with the same budgets.
    sink = factory.kubo(IpfsNode(id=4, name="s", url=url, kind=NodeKind.KUBO, auth=None))
    assert isinstance(sink, KuboClient) and sink.config == k
    assert factory.kubo(IpfsNode(id=1, name="k", url=url, kind=NodeKind.KUBO, auth=None)) is kubo
    assert factory.kubo(IpfsNode(id=2, name="c", url=url, kind=NodeKind.CLUSTER, auth=None)) is None


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for var in [v for v in os.environ if v.startswith("MODELPACK_")]:
        monkeypatch.delenv(var)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "value", "read", "expected"),
    [
        ("MODELPACK_LIMITS__CAR_MAX_BLOCK_BYTES", "1048576", lambda s: s.limits.car_max_block_bytes, 1 * MiB),
        (
            "MODELPACK_LIMITS__PUBLISH_BODY_SLACK_BYTES",
            "2048",
            lambda s: s.limits.publish_body_slack_bytes,
            2048,
        ),
        ("MODELPACK_LIMITS__MAX_DETACHED_SIGNATURES", "4", lambda s: s.limits.max_detached_signatures, 4),
        ("MODELPACK_STORAGE__INGEST_FLUSH_BYTES", "65536", lambda s: s.storage.ingest_flush_bytes, 64 * KiB),
        ("MODELPACK_UNIXFS__PIPELINE_MAX_IN_FLIGHT", "6", lambda s: s.unixfs.pipeline_max_in_flight, 6),
        ("MODELPACK_SERVER__READ_CACHE_ENTRIES", "5", lambda s: s.server.read_cache_entries, 5),
        ("MODELPACK_REPLICATION__CONNECT_TIMEOUT_S", "2.5", lambda s: s.replication.connect_timeout_s, 2.5),
        ("MODELPACK_VALIDATION__THREADS", "4", lambda s: s.validation.threads, 4),
        ("MODELPACK_IPNS__REPUBLISH_INTERVAL_S", "60", lambda s: s.ipns.republish_interval_s, 60.0),
        ("MODELPACK_CURATION__SWEEP_BATCH", "10", lambda s: s.curation.sweep_batch, 10),
        ("MODELPACK_TRUST__MAX_POLICY_KEYS", "12", lambda s: s.trust.max_policy_keys, 12),
    ],
)
def test_new_keys_follow_the_environment(
    clean_env: pytest.MonkeyPatch, env: str, value: str, read: Any, expected: object
) -> None:
    assert read(load_settings()) != expected
    clean_env.setenv(env, value)
    assert read(load_settings()) == expected


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("MODELPACK_REPLICATION__PINNING_SERVICE_PAGE_SIZE", "1001"),
        ("MODELPACK_LIMITS__CAR_MAX_ROOTS", "0"),
        ("MODELPACK_VALIDATION__THREADS", "0"),
        ("MODELPACK_TRUST__PAST_REVOCATION_SLACK_S", "-1"),
        ("MODELPACK_SERVER__GATEWAY_WRITE_BUFFER_BYTES", "10"),
    ],
)
def test_out_of_bounds_values_are_refused_by_name(
    clean_env: pytest.MonkeyPatch, env: str, value: str
) -> None:
    clean_env.setenv(env, value)
    with pytest.raises(ConfigError, match=env):
        load_settings()


def test_new_keys_from_the_toml_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "modelpack.toml"
    path.write_text(
        "[trust]\nmax_policy_publishers = 3\n[validation]\nruntime_overhead_bytes = 1073741824\n"
        "[curation]\nmax_attempts = 5\n"
    )
    s = load_settings(path)
    assert (s.trust.max_policy_publishers, s.validation.runtime_overhead_bytes, s.curation.max_attempts) == (
        3,
        1024**3,
        5,
    )


def test_defaults_are_todays_component_defaults() -> None:
    from pinner.blockstore import FsBlockstoreConfig
    from registry.cache import CacheConfig
    from registry.gate.config import GateConfig
    from registry.ipns.channels import IpnsChannelConfig
    from registry.trust.key_registry import TrustConfig

    s = Settings()
    assert configs.blockstore_config(s) == FsBlockstoreConfig(fsync=s.storage.fsync)
    assert configs.ipns_channel_config(s) == IpnsChannelConfig()
    assert s.server.read_cache_entries == CacheConfig().max_entries
    t = TrustConfig()
    assert (s.trust.past_revocation_slack_s, s.trust.max_policy_keys, s.trust.max_policy_publishers) == (
        t.past_revocation_slack_s,
        t.max_policy_keys,
        t.max_policy_publishers,
    )
    g = GateConfig()
    assert (s.curation.sweep_batch, s.curation.max_attempts, s.validation.fetch_timeout_s) == (
        g.sweep_batch,
        g.curate_max_attempts,
        g.fetch_timeout_s,
    )
    assert s.validation.runtime_overhead_bytes == g.budget.runtime_overhead_bytes


def test_the_readme_lists_every_section_and_key() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
    missing = []
    for name, field in Settings.model_fields.items():
        parts = section.split(f"`[{name}]`\n", 1)
        table = parts[1].split("\n`[", 1)[0] if len(parts) == 2 else ""
        missing += [f"{name}.{key}" for key in field.annotation.model_fields if f"| `{key}` |" not in table]  # type: ignore[union-attr]
    assert not missing, f"README Configuration lacks {missing}"
