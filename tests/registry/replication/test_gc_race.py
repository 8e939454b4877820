"""GC against a concurrent publish (issue 12 item 13): liveness is re-checked where the deletion happens."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select

from pinner.cids import normalize_cid
from registry.db.models import Blob, Pointer
from registry.replication.upkeep import Upkeep
from tests.factories import PackFactory
from tests.registry.replication.conftest import SMALL, Harness


async def test_a_shard_a_pack_published_during_gc_needs_is_not_deleted(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await harness.add_fake("a")
    shard = b"the shard the next version shares " * 1000
    old = await harness.make_pack(shards=1, version="v1", shared=[shard])
    await harness.service.replicate_pack(old)
    async with harness.sessions() as s, s.begin():
        await s.execute(delete(Pointer).where(Pointer.pack_cid == old))
    harness.service.upkeep.config = harness.service.config = type(harness.service.config)(
        target=harness.service.config.target, down_grace_s=0.0, gc_retention_s=0.0
    )
    factory = PackFactory(harness.sessions, harness.store)
    doc = await factory.manifest("v2", model="m", shards=[("model-00000.safetensors", shard)], params=SMALL)
    shard_cid = normalize_cid(doc["shards"][0]["cid"])
    assert shard_cid in node.pins

    select_garbage = Upkeep._select_garbage
    published: list[str] = []

    async def publish_after_selection(self: Upkeep) -> Any:
        snapshot = await select_garbage(self)
        assert shard_cid in snapshot[1]  # gc chose the shard: no live pack used it yet
        published.append(await factory.publish("acme/m", doc, tag="v2"))
        return snapshot

    monkeypatch.setattr(Upkeep, "_select_garbage", publish_after_selection)
    await harness.service.upkeep.collect_garbage()
    assert published
    assert harness.store.has(shard_cid)  # the new pack's shard file survives
    assert shard_cid in node.pins  # and stays pinned
    async with harness.sessions() as s:
        assert (await s.execute(select(Blob.cid).where(Blob.cid == shard_cid))).scalar_one_or_none()
