"""Published packs (their bytes in the service's blockstore), fake nodes behind a backend factory, a service to drive."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.ipfs.protocol import PinBackend
from pinner.replication.model import Target
from pinner.testing.nodes import FakeKuboNode
from pinner.unixfs.params import UnixfsParams
from registry.app.daemon import build_app
from registry.db.models import IpfsNode
from registry.jobs.sql import SqlJobQueue
from registry.replication.nodes import NodeRegistry
from registry.replication.rows import ReplicationConfig
from registry.replication.service import ReplicationService
from registry.settings import Settings
from tests.factories import PackFactory
from tests.registry.api import helpers

SMALL = UnixfsParams(chunk_size=4096, max_links=8, cid_version=1, raw_leaves=True)


class FakeBackends:
    """BackendFactory over fakes, by node URL."""

    def __init__(self) -> None:
        self.by_url: dict[str, PinBackend] = {}

    def backend(self, node: IpfsNode) -> PinBackend:
        return self.by_url[node.url]


@dataclass
class Harness:
    sessions: async_sessionmaker[AsyncSession]
    store: FsBlockstore
    backends: FakeBackends
    queue: SqlJobQueue
    registry: NodeRegistry
    service: ReplicationService

    async def add_fake(
        self, name: str, *, free: int | None = 10**12, zone: str | None = None
    ) -> FakeKuboNode:
        node = FakeKuboNode(f"http://127.0.0.1:{40000 + len(self.backends.by_url)}", free=free)
        self.backends.by_url[node.url] = node
        await self.registry.add(name, "kubo", node.url, tags={"zone": zone} if zone else None)
        await self.service.check_nodes()
        return node

    async def make_pack(
        self,
        shards: int = 2,
        size: int = 20_000,
        *,
        version: str = "v1",
        shared: list[bytes] | None = None,
        params: UnixfsParams = SMALL,
    ) -> str:
        """Publish ``acme/m`` at ``version`` (tagged ``version`` too): ``shared`` shards first, then random ones."""
        datas = list(shared or []) + [os.urandom(size) for _ in range(shards - len(shared or []))]
        files = [(f"model-{i:05d}.safetensors", data) for i, data in enumerate(datas)]
        return await PackFactory(self.sessions, self.store).make(
            "acme/m", version, shards=files, params=params, tag=version
        )


@pytest.fixture
def harness_factory(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> Iterator[Callable[..., Harness]]:
    def make(config: ReplicationConfig | None = None) -> Harness:
        store = FsBlockstore(tmp_path / "blocks", FsBlockstoreConfig(fsync=False))
        backends = FakeBackends()
        queue = SqlJobQueue(sessions)
        registry = NodeRegistry(sessions, os.urandom(32), allowed_hosts=("127.0.0.1",))
        cfg = config or ReplicationConfig(target=Target(2, 3), down_grace_s=0.0)
        service = ReplicationService(sessions, store, backends, queue, registry, cfg, rng=random.Random(7))
        return Harness(sessions, store, backends, queue, registry, service)

    yield make


@pytest.fixture
def harness(harness_factory: Callable[..., Harness]) -> Harness:
    return harness_factory()


# -- the node API over HTTP: a global admin (root) and alice of acme; no background jobs


@dataclass
class Api:
    client: TestClient
    admin: str
    alice: str


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        admin = await helpers.token(app, "root", scopes=("admin",))
        alice = await helpers.token(app, "alice", ["acme"])
        yield Api(client, admin, alice)
