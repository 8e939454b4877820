"""Every service of the daemon, built from settings in one async context, in dependency order.

Nothing runs yet when :func:`open_services` yields: the caller (``registry.app.daemon``) then hands the
services to the HTTP routes, builds the worker's job table from them and starts the worker and clocks.
On exit everything is closed in reverse order (node HTTP session, blockstore, database).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore
from pinner.replication.model import Target
from registry.accounts.auth import AuthService
from registry.api.context import RegistryServices
from registry.app import configs
from registry.app.datalock import data_dir_lock
from registry.cache import TtlCache
from registry.db.engine import create_engine, ping, session_factory
from registry.db.fastread import FastReads
from registry.db.migrate import require_current
from registry.events.service import EventService
from registry.gate.curation import CurationService
from registry.gate.rule import RegistryReplication, registry_trust
from registry.gate.validation import ValidationService
from registry.ipns.channels import IpnsChannels, load_kek
from registry.ipns.sealed import require_kek_for_sealed_rows
from registry.jobs.sql import SqlJobQueue
from registry.names import ModelRef
from registry.packs.blobs import BlobService
from registry.packs.browse import BrowseService
from registry.packs.fetch import ShardFetchService
from registry.packs.hfcheck import stored_reader
from registry.packs.pointers import PointerService
from registry.packs.publish import PublishService
from registry.pinning.delegates import NodeAddresses
from registry.pinning.replicate import PinReplicator
from registry.pinning.service import PinService
from registry.replication.clients import ClientFactory
from registry.replication.nodes import NodeRegistry, reseal_legacy_credentials
from registry.replication.rows import ReplicationCounters
from registry.replication.service import ReplicationService
from registry.replication.shard_fetch import NodeShardFetcher
from registry.settings import Settings
from registry.trust.policies import TrustService
from registry.webhooks.service import WebhookService


@dataclass(frozen=True, slots=True)
class Services:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    queue: SqlJobQueue
    store: FsBlockstore
    trust: TrustService
    ipns: IpnsChannels
    replication: ReplicationService
    counters: ReplicationCounters
    fetch: ShardFetchService
    registry: RegistryServices
    gate: ValidationService
    pins: PinService
    pin_replicator: PinReplicator
    node_addresses: NodeAddresses
    webhooks: WebhookService


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    db = settings.database
    engine = create_engine(
        settings.database_url, pool_size=db.pool_size, connect_timeout_s=db.connect_timeout_s, echo=db.echo
    )
    try:
        await ping(engine)
        await require_current(engine)
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the database, the blockstore and the node session; build every service on them."""
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(data_dir_lock(settings.storage.data_dir))
        engine = await stack.enter_async_context(_database(settings))
        sessions = session_factory(engine)
        db = settings.database
        reads = FastReads(engine, pool_size=db.pool_size, connect_timeout_s=db.connect_timeout_s)
        stack.push_async_callback(reads.close)  # before the engine is disposed
        j = settings.jobs
        queue = SqlJobQueue(
            sessions,
            lease_s=j.lease_s,
            max_attempts=j.max_attempts,
            backoff_base_s=j.backoff_base_s,
            backoff_max_s=j.backoff_max_s,
        )
        store = await asyncio.to_thread(
            FsBlockstore, settings.storage.data_dir / "blocks", configs.blockstore_config(settings)
        )
        await require_kek_for_sealed_rows(
            sessions, settings.ipns.key_encryption_key, settings.storage.data_dir
        )
        kek = await asyncio.to_thread(load_kek, settings.ipns.key_encryption_key, settings.storage.data_dir)
        await reseal_legacy_credentials(sessions, kek)  # bind pre-#12 node credentials to their node
        http = await stack.enter_async_context(aiohttp.ClientSession())
        # The one node-client factory: replication, fetch-by-CID, the gate and IPNS publishing use it.
        nodes = ClientFactory(http, kek, configs.node_client_config(settings))
        node_shards = NodeShardFetcher(sessions, nodes)

        # Key-registration challenges are MACed under a key derived from the KEK: daemons sharing it agree.
        trust = TrustService(sessions, configs.trust_config(settings), challenge_secret=kek)
        ipns = IpnsChannels(sessions, kek, queue, configs.ipns_channel_config(settings), sinks=nodes.kubo)
        on_moved = ipns.on_pointer_moved

        counters = ReplicationCounters()
        replication = ReplicationService(
            sessions,
            store,
            nodes,
            queue,
            NodeRegistry(sessions, kek, allowed_hosts=settings.replication.allowed_node_hosts),
            configs.replication_config(settings),
            mover_config=configs.mover_config(settings),
            counters=counters,
        )

        cache = configs.read_cache_config(settings)
        pointers = PointerService(sessions, reads, on_moved=on_moved, cache=TtlCache(cache))
        pack_json: TtlCache[str, bytes] = TtlCache(cache)

        def on_changed(ref: ModelRef, cid: str) -> None:
            pointers.forget_model(ref)
            pack_json.invalidate(cid)

        fetch = ShardFetchService(
            sessions,
            store,
            node_shards,
            queue,
            configs.fetch_config(settings),
            on_moved=on_moved,
            on_changed=on_changed,
        )
        lim = settings.limits
        limits = configs.manifest_limits(settings)
        registry = RegistryServices(
            auth=AuthService(
                sessions,
                cache_ttl_s=settings.server.token_cache_ttl_s,
                cache_entries=settings.server.read_cache_entries,
            ),
            blobs=BlobService(sessions, store, configs.blob_config(settings)),
            publish=PublishService(
                sessions,
                queue,
                limits,
                on_moved=on_moved,
                on_published=pointers.forget_model,
                nodes=node_shards,
                max_detached=lim.max_detached_signatures,
                read_stored=stored_reader(store),
            ),
            browse=BrowseService(sessions, reads),
            pointers=pointers,
            limits=limits,
            events=EventService(sessions, configs.events_config(settings)),
            read_requires_token=settings.server.read_requires_token,
            metrics_requires_token=configs.metrics_requires_token(settings),
            pack_json=pack_json,
            page_size_default=min(lim.page_size_default, lim.page_size_max),
            page_size_max=lim.page_size_max,
            publish_body_slack_bytes=lim.publish_body_slack_bytes,
        )

        gate_config = configs.gate_config(settings)
        curation = CurationService(
            sessions,
            gate_config,
            registry_trust,
            RegistryReplication(
                Target(gate_config.replication_min, gate_config.replication_max),
                configs.replication_config(settings).down_grace,
            ),
            on_moved=on_moved,
            on_changed=pointers.forget_model,
            on_withdrawn=ipns.on_pointer_withdrawn,
        )
        gate = ValidationService(sessions, gate_config, curation, queue, store=store, fetcher=node_shards)
        pin_config = configs.pinning_config(settings)
        addresses = NodeAddresses(sessions, nodes, pin_config.delegates_ttl_s)
        pin_replicator = PinReplicator(
            sessions, nodes, queue, addresses, pin_config, configs.replication_config(settings)
        )
        webhooks = WebhookService(sessions, kek, queue, configs.webhook_config(settings))
        stack.push_async_callback(webhooks.close)
        yield Services(
            engine=engine,
            sessions=sessions,
            queue=queue,
            store=store,
            trust=trust,
            ipns=ipns,
            replication=replication,
            counters=counters,
            fetch=fetch,
            registry=registry,
            gate=gate,
            pins=PinService(sessions, queue, pin_config),
            pin_replicator=pin_replicator,
            node_addresses=addresses,
            webhooks=webhooks,
        )
