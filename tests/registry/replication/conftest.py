"""Packs made straight in the index + blockstore, fake nodes behind a backend factory, a service to drive."""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.digests import cid_str
from pinner.ipfs.protocol import PinBackend
from pinner.replication.model import Target
from pinner.unixfs.params import UnixfsParams
from registry.db.base import utcnow
from registry.db.models import Blob, IpfsNode, Model, Namespace, Pack, PackState, Pointer, Shard
from registry.jobs.sql import SqlJobQueue
from registry.replication.nodes import NodeRegistry
from registry.replication.rows import ReplicationConfig
from registry.replication.service import ReplicationService
from registry.replication.source import manifest_cid
from tests.pinner.replication.fakes import FakeKuboNode

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
        datas = list(shared or []) + [os.urandom(size) for _ in range(shards - len(shared or []))]
        infos = []
        for i, data in enumerate(datas):
            digest = self.store.ingest_file(io.BytesIO(data), params)
            infos.append(
                (f"model-{i:05d}.safetensors", cid_str(digest.cid), digest.sha256.hex(), digest.size)
            )
        manifest = json.dumps(
            {"version": version, "shards": [i[1] for i in infos], "n": random.random()}
        ).encode()
        cid = manifest_cid(manifest)
        async with self.sessions() as s, s.begin():
            ns = (await s.execute(select(Namespace).where(Namespace.name == "acme"))).scalar_one_or_none()
            if ns is None:
                ns = Namespace(name="acme")
                s.add(ns)
                await s.flush()
            model = (await s.execute(select(Model).where(Model.name == "m"))).scalar_one_or_none()
            if model is None:
                model = Model(namespace_id=ns.id, name="m")
                s.add(model)
                await s.flush()
            now = utcnow()
            s.add(
                Pack(
                    cid=cid,
                    model_id=model.id,
                    model_version=version,
                    manifest=manifest,
                    state=PackState.AVAILABLE,
                    total_size=sum(i[3] for i in infos),
                    shard_count=len(infos),
                    created_at=now,
                    updated_at=now,
                )
            )
            await s.flush()
            for pos, (fn, scid, sha, sz) in enumerate(infos):
                s.add(Shard(pack_cid=cid, position=pos, filename=fn, cid=scid, sha256=sha, size=sz))
                if await s.get(Blob, scid) is None:
                    s.add(Blob(cid=scid, sha256=sha, size=sz))
            s.add(Pointer(model_id=model.id, tag=version, pack_cid=cid))
        return cid


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
