"""IPNS channels: the KEK file, records signed on pointer moves, republish near EOL, publishing to nodes."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.states import NodeKind, NodeState
from registry.db.base import utcnow
from registry.db.jobs import Job
from registry.db.models import IpfsNode, IpnsKey, IpnsRecord, Model, Pointer
from registry.errors import ConfigError, NotFound
from registry.ipns.channel import IpnsRecordConfig
from registry.ipns.channels import IpnsChannelConfig, IpnsChannels, load_kek
from registry.ipns.publish import peer_id_of
from registry.ipns.record import WITHDRAWN_PATH, check_sequence, validate_record
from registry.jobs.protocol import RetryJob
from registry.jobs.sql import SqlJobQueue
from registry.names import ModelRef
from registry.packs.pointers import move_pointer
from registry.trust.errors import IpnsSequenceNotNewer
from registry.trust.sealing import generate_kek
from tests.factories import PackFactory

RECORDS = IpnsRecordConfig(validity_s=3600, ttl_s=60, republish_before_s=600)


@dataclass
class Clock:
    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeSink:
    puts: list[tuple[str, bytes]]
    fail: bool = False

    async def put_ipns_record(self, name: str, record: bytes) -> None:
        if self.fail:
            raise OSError("node unreachable")
        self.puts.append((name, record))

    async def close(self) -> None:
        pass


async def _model_with_packs(packs: PackFactory, n: int) -> tuple[int, list[str]]:
    cids = [await packs.make("acme/tiny", str(i)) for i in range(n)]
    async with packs.sessions() as s:
        mid = (await s.execute(select(Model.id))).scalar_one()
    return mid, cids


def _channels(sessions: Any, clock: Clock, **kw: Any) -> IpnsChannels:
    config = IpnsChannelConfig(records=RECORDS, publish_latest=kw.pop("publish_latest", False))
    sinks = kw.pop("sinks", lambda node: None)  # no node takes records unless the test gives sinks
    return IpnsChannels(
        sessions, kw.pop("kek", generate_kek()), kw.pop("jobs", None), config, sinks=sinks, clock=clock, **kw
    )


def test_kek_file_is_created_0600_then_reused(tmp_path: Path) -> None:
    first = load_kek(None, tmp_path / "data")
    path = tmp_path / "data" / "ipns.kek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_kek(None, tmp_path / "data") == first
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_kek(None, tmp_path / "data")
    with pytest.raises(ConfigError):
        load_kek("bm90IDMyIGJ5dGVz", tmp_path)
    assert len(load_kek("A" * 43 + "=", tmp_path)) == 32


async def test_each_move_signs_sequence_plus_one_and_enqueues_publish(
    sessions, pack_factory: PackFactory
) -> None:
    mid, (a, b) = await _model_with_packs(pack_factory, 2)
    clock = Clock()
    queue = SqlJobQueue(sessions)
    channels = _channels(sessions, clock, jobs=queue)
    async with sessions() as s, s.begin():
        first = await channels.sign(s, mid, "curated", a)
    clock.now += timedelta(seconds=5)
    async with sessions() as s, s.begin():
        second = await channels.sign(s, mid, "curated", b)
    assert (first.sequence, second.sequence) == (0, 1) and first.name == second.name
    assert second.channel == "acme/tiny@curated" and second.value == f"/ipfs/{b}"
    rec = validate_record(second.name, second.record, clock.now)
    assert rec.path == f"/ipfs/{b}" and rec.ttl_ns == 60 * 10**9
    assert rec.expires_at == clock.now + timedelta(seconds=3600)
    with pytest.raises(IpnsSequenceNotNewer):  # a replay of the older record is refused
        check_sequence(validate_record(first.name, first.record, clock.now), rec)
    latest = await channels.for_channel(ModelRef("acme", "tiny"), "curated")
    assert latest.sequence == 1 and latest.record == second.record
    assert (await channels.latest(peer_id_of(second.name))).sequence == 1  # peer-id form finds it too
    async with sessions() as s:
        jobs = (await s.execute(select(Job))).scalars().all()
        keys = (await s.execute(select(IpnsKey))).scalars().all()
    assert [(j.kind, j.payload) for j in jobs] == [("ipns-publish", {"name": second.name})]  # deduped
    assert len(keys) == 1 and second.record not in keys[0].sealed_private_key


async def test_only_channel_tags_get_records(sessions, pack_factory: PackFactory) -> None:
    mid, (a,) = await _model_with_packs(pack_factory, 1)
    quiet, loud = _channels(sessions, Clock()), _channels(sessions, Clock(), publish_latest=True)
    async with sessions() as s, s.begin():
        await quiet.on_pointer_moved(s, mid, "latest", a)
        await quiet.on_pointer_moved(s, mid, "stable", a)
    with pytest.raises(NotFound):
        await quiet.for_channel(ModelRef("acme", "tiny"), "latest")
    async with sessions() as s, s.begin():
        await loud.on_pointer_moved(s, mid, "latest", a)
    assert (await loud.for_channel(ModelRef("acme", "tiny"), "latest")).sequence == 0


async def test_a_key_sealed_under_another_kek_does_not_sign(sessions, pack_factory: PackFactory) -> None:
    mid, (a,) = await _model_with_packs(pack_factory, 1)
    async with sessions() as s, s.begin():
        await _channels(sessions, Clock()).sign(s, mid, "curated", a)
    from registry.trust.errors import KeySealError

    with pytest.raises(KeySealError):
        async with sessions() as s, s.begin():
            await _channels(sessions, Clock()).sign(s, mid, "curated", a)
    async with sessions() as s:
        assert len((await s.execute(select(IpnsRecord))).scalars().all()) == 1  # nothing stored


async def _point(sessions: async_sessionmaker[AsyncSession], mid: int, tag: str, cid: str) -> None:
    async with sessions() as s, s.begin():
        await move_pointer(s, mid, tag, cid, actor="test", reason="test")


async def test_republish_resigns_only_records_near_eol(sessions, pack_factory: PackFactory) -> None:
    mid, (a, b) = await _model_with_packs(pack_factory, 2)
    clock = Clock()
    channels = _channels(sessions, clock, kek=generate_kek(), publish_latest=True)
    await _point(sessions, mid, "curated", a)
    await _point(sessions, mid, "latest", b)
    async with sessions() as s, s.begin():
        cur = await channels.sign(s, mid, "curated", a)
    clock.now += timedelta(seconds=1800)
    async with sessions() as s, s.begin():
        await channels.sign(s, mid, "latest", b)
    assert await channels.republish_due() == []
    clock.now += timedelta(seconds=3600 - 1800 - 600 + 1)  # curated is now within 600 s of its EOL
    assert await channels.republish_due() == [cur.name]
    again = await channels.latest(cur.name)
    assert again.sequence == 1 and again.value == cur.value
    assert validate_record(cur.name, again.record, clock.now).expires_at > clock.now + timedelta(seconds=3000)
    assert await channels.republish_due() == []


async def test_a_withdrawn_channel_is_not_republished(sessions, pack_factory: PackFactory) -> None:
    """A curated pointer removed (degraded, nothing to roll back to) must not be kept alive by re-signing:
    republish signs the withdrawal instead (also for a channel withdrawn before withdrawal records)."""
    mid, (a,) = await _model_with_packs(pack_factory, 1)
    clock = Clock()
    channels = _channels(sessions, clock, kek=generate_kek())
    await _point(sessions, mid, "curated", a)
    async with sessions() as s, s.begin():
        cur = await channels.sign(s, mid, "curated", a)
    async with sessions() as s, s.begin():
        await s.execute(delete(Pointer).where(Pointer.model_id == mid))
    clock.now += timedelta(seconds=3600 - 600 + 1)
    assert await channels.republish_due() == [cur.name]
    latest = await channels.latest(cur.name)
    assert latest.sequence == cur.sequence + 1 and latest.value == WITHDRAWN_PATH
    assert validate_record(cur.name, latest.record, clock.now).withdrawn


async def test_publish_puts_the_newest_record_to_every_kubo_node(sessions, pack_factory: PackFactory) -> None:
    mid, (a,) = await _model_with_packs(pack_factory, 1)
    puts: list[tuple[str, bytes]] = []
    flaky = {"fail": True}

    def sinks(node: IpfsNode) -> FakeSink | None:
        if node.kind is not NodeKind.KUBO:
            return None
        return FakeSink(puts, fail=node.name == "b" and flaky["fail"])

    channels = _channels(sessions, Clock(), sinks=sinks)
    async with sessions() as s, s.begin():
        rec = await channels.sign(s, mid, "curated", a)
    assert await channels.publish(rec.name) == []  # no nodes: nothing to do, and no error
    async with sessions() as s, s.begin():
        for name, kind in (("a", NodeKind.KUBO), ("b", NodeKind.KUBO), ("c", NodeKind.CLUSTER)):
            s.add(IpfsNode(name=name, kind=kind, url=f"http://127.0.0.1:1/{name}", state=NodeState.UP))
    with pytest.raises(RetryJob, match="b: node unreachable"):
        await channels.publish(rec.name)
    flaky["fail"] = False
    assert len(await channels.publish(rec.name)) == 2
    assert {p[0] for p in puts} == {peer_id_of(rec.name)} and {p[1] for p in puts} == {rec.record}
    assert (await channels.latest(rec.name)).published_at is not None


def test_peer_id_form_of_a_name() -> None:
    name = "k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w"  # an official vector's name
    pid = peer_id_of(name)
    assert pid.startswith("12D3KooW") and peer_id_of(pid) == pid
