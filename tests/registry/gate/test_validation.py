"""The validate job on the real sandbox and a real database: verdicts, stored reports, states, curation."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.api.keys import BLOCKSTORE, IPNS_CHANNELS
from registry.db.listings import find_listing
from registry.db.models import AuditEvent, Pack, PackState, PointerChange, ValidationReport
from registry.gate.config import SandboxBudget
from registry.gate.validation import ValidationService
from registry.jobs.protocol import ClaimedJob, RetryJob
from registry.names import ModelRef
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv


async def pack_row(env: GateEnv, cid: str) -> Pack:
    async with env.sessions() as s:
        return await find_listing(s, cid)


async def test_a_good_signed_pack_is_validated_then_curated_with_an_ipns_record(env: GateEnv) -> None:
    cid = await env.make_and_publish()
    view = await env.gate.validate(cid)
    assert view.verdict == "pass" and view.state == "curated", view
    assert view.report is not None and view.report["smoke"]["checks"]
    assert set(view.report["shard_sources"].values()) == {"blockstore"}
    status, body = await env.get("/v1/models/acme/tiny/pointers/curated")
    assert status == 200 and body["cid"] == cid
    record = await env.app[IPNS_CHANNELS].for_channel(ModelRef("acme", "tiny"), "curated")
    assert record.value == f"/ipfs/{cid}" and record.sequence >= 0
    async with env.sessions() as s:
        events = (
            await s.execute(select(AuditEvent.action).where(AuditEvent.subject == "acme/tiny@curated"))
        ).all()
        assert ("pack.curated",) in events
        moves = (await s.execute(select(PointerChange).where(PointerChange.tag == "curated"))).scalars().all()
        assert [(m.from_cid, m.to_cid) for m in moves] == [(None, cid)]


async def test_an_unsigned_pack_is_validated_but_not_curated(env: GateEnv) -> None:
    cid = await env.make_and_publish(signed=False)
    view = await env.gate.validate(cid)
    assert view.state == "validated"
    assert view.state_reason is not None and "no signatures" in view.state_reason
    status, _ = await env.get("/v1/models/acme/tiny/pointers/curated")
    assert status == 404


@pytest.mark.parametrize(
    "db_url", ["sqlite"], indirect=True
)  # the sandbox's verdicts; the database is incidental
@pytest.mark.parametrize(
    ("defect", "words"), [("nan", "non-finite"), ("shape", "shape"), ("config", "lacks")]
)
async def test_a_defective_pack_is_rejected_with_the_reason(
    env: GateEnv, db_url: str, defect: str, words: str
) -> None:
    cid = await env.make_and_publish(defect=defect)
    view = await env.gate.validate(cid)
    assert view.state == "rejected" and view.verdict in ("invalid_pack", "smoke_failed")
    assert view.state_reason is not None and words in view.state_reason
    pack = await pack_row(env, cid)
    assert pack.state is PackState.REJECTED


async def test_a_byte_flipped_in_the_stored_shard_is_caught_and_rejected(env: GateEnv) -> None:
    cid = await env.make_and_publish()
    async with env.sessions() as s:
        shard_cid = (await s.execute(select(func.min(ValidationReport.id)))).scalar()  # no report yet
        assert shard_cid is None
    detail = (await (await env.client.get(f"/v1/packs/{cid}")).json())["shards"][0]
    path: Path = env.app[BLOCKSTORE].file_path(detail["cid"])
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    view = await env.gate.validate(cid)
    assert view.state == "rejected" and view.verdict == "invalid_pack"
    assert view.state_reason is not None and "sha256" in view.state_reason


async def test_a_pack_over_the_budget_is_rejected_before_any_byte_is_read(env: GateEnv) -> None:
    cid = await env.make_and_publish()
    runner = packs.FakeRunner()
    g = env.gate
    small = dataclasses.replace(g.config, budget=SandboxBudget(memory_bytes=64 * 1024 * 1024))
    svc = ValidationService(env.sessions, small, g.curation, None, store=env.app[BLOCKSTORE], runner=runner)
    view = await svc.validate(cid)
    assert runner.calls == []
    assert view.state == "rejected" and view.report is not None
    assert view.report["error_code"] == "pack_too_large"
    assert view.state_reason is not None and "validation.memory_bytes" in view.state_reason


class FakeSource:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def cat(self, cid: str) -> AsyncIterator[bytes]:
        yield self.data


class FakeFetcher:
    def __init__(self, sources: list[tuple[str, bytes]]) -> None:
        self._sources = sources

    async def sources(self) -> AsyncIterator[tuple[str, FakeSource]]:
        for name, data in self._sources:
            yield name, FakeSource(data)


async def test_missing_shards_come_from_a_node_only_when_cid_and_sha256_match(env: GateEnv) -> None:
    pack = packs.make_pack(env.tmp / "p")
    packs.sign(pack, env.key)
    cid = await env.publish(pack)
    name, data = packs.shard_files(pack)[0]
    detail = (await (await env.client.get(f"/v1/packs/{cid}")).json())["shards"][0]
    env.app[BLOCKSTORE].file_path(detail["cid"]).unlink()
    g = env.gate
    bad = bytearray(data)
    bad[100] ^= 1

    def same_bytes(pack_dir: Path) -> None:
        assert (pack_dir / name).read_bytes() == data

    runner = packs.FakeRunner(check=same_bytes)

    svc = ValidationService(
        env.sessions,
        g.config,
        g.curation,
        None,
        store=env.app[BLOCKSTORE],
        fetcher=FakeFetcher([("liar", bytes(bad)), ("honest", data)]),
        runner=runner,
    )
    view = await svc.validate(cid)
    assert view.verdict == "pass"
    assert view.report is not None and view.report["shard_sources"][name] == "node:honest"

    nowhere = ValidationService(
        env.sessions,
        g.config,
        g.curation,
        None,
        store=env.app[BLOCKSTORE],
        fetcher=FakeFetcher([]),
        runner=runner,
    )
    with pytest.raises(RetryJob, match="no verified copy"):
        await nowhere.validate(cid)
    async with env.sessions() as s:  # the interrupted attempt leaves no "running" report behind
        verdicts = (await s.execute(select(ValidationReport.verdict))).scalars().all()
        assert "running" not in verdicts


async def test_the_automatic_job_respects_auto_validate_and_does_not_repeat(env: GateEnv) -> None:
    cid = await env.make_and_publish(signed=False)
    runner = packs.FakeRunner()
    calls = runner.calls
    g = env.gate
    off = dataclasses.replace(g.config, auto_validate=False)
    svc = ValidationService(env.sessions, off, g.curation, None, store=env.app[BLOCKSTORE], runner=runner)
    job = ClaimedJob(1, "validate", {"pack": cid}, 1, 8, "t")
    await svc.handle_validate(job)
    assert calls == [] and (await pack_row(env, cid)).state is PackState.AVAILABLE
    on = ValidationService(env.sessions, g.config, g.curation, None, store=env.app[BLOCKSTORE], runner=runner)
    await on.handle_validate(job)
    await on.handle_validate(job)  # already validated: the automatic job does not run it again
    assert len(calls) == 1
    await on.handle_validate(ClaimedJob(2, "validate", {"pack": cid, "requested_by": "alice"}, 1, 8, "t"))
    assert len(calls) == 2  # an explicit request always runs
