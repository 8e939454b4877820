"""The read cache: entries expire, the oldest go first, local writes invalidate; another replica's writes
show up once the TTL passes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.format.pack import load_manifest
from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from registry.accounts.auth import AuthService
from registry.cache import CacheConfig, TtlCache
from registry.db.fastread import FastReads
from registry.names import ModelRef
from registry.packs.blobs import BlobService
from registry.packs.pointers import PointerService
from registry.packs.publish import PublishService
from tests.registry.api import helpers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_and_the_oldest_are_dropped_when_full() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(CacheConfig(ttl_s=1.0, max_entries=2), clock)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)
    clock.now += 1.5
    assert cache.get("b") is None
    off: TtlCache[str, int] = TtlCache(CacheConfig(ttl_s=0))
    off.put("a", 1)
    assert off.get("a") is None


async def test_local_moves_are_seen_at_once_and_other_replicas_after_the_ttl(
    sessions: async_sessionmaker[AsyncSession], fast_reads: FastReads, tmp_path: Path
) -> None:
    auth = AuthService(sessions)
    alice = await auth.authenticate((await auth.create_token("alice", namespaces=["acme"])).token)
    store = FsBlockstore(tmp_path, FsBlockstoreConfig(fsync=False))
    data = helpers.shard_bytes(4000, 1)

    async def one() -> AsyncIterator[bytes]:
        yield data

    await BlobService(sessions, store).ingest(alice, helpers.cid_of(data), one())
    clock = Clock()
    here = PointerService(sessions, fast_reads, cache=TtlCache(CacheConfig(ttl_s=5.0), clock))
    replica = PointerService(sessions, fast_reads)  # another daemon on the same database
    publish = PublishService(sessions, None, on_published=here.forget_model)
    ref = ModelRef("acme", "tiny")
    v1 = await publish.publish(
        alice, ref, load_manifest(helpers.manifest([("a.safetensors", data)], version="1"))
    )
    assert (await here.resolve(ref, "latest")).cid == v1.cid
    v2 = await publish.publish(
        alice, ref, load_manifest(helpers.manifest([("a.safetensors", data)], version="2"))
    )
    assert (await here.resolve(ref, "latest")).cid == v2.cid  # publish through this process: invalidated
    await here.set(alice, ref, "stable", v1.cid)
    assert (await here.resolve(ref, "stable")).cid == v1.cid
    await replica.set(alice, ref, "stable", v2.cid)
    assert (await here.resolve(ref, "stable")).cid == v1.cid  # stale within the TTL...
    clock.now += 5.1
    assert (await here.resolve(ref, "stable")).cid == v2.cid  # ...and fresh after it
