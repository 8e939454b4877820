"""The replication service on a real index (SQLite and Postgres) with fake nodes: every job's behaviour."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, update

from pinner.cids import normalize_cid
from pinner.states import NodeState, ReplicaState
from registry.db.jobs import Job
from registry.db.models import Blob, IpfsNode, Pointer, Replica
from registry.jobs.protocol import RetryJob
from tests.registry.replication.conftest import Harness


async def states(h: Harness) -> dict[tuple[str, str], str]:
    async with h.sessions() as s:
        rows = await s.execute(select(Replica.cid, IpfsNode.name, Replica.state).join(IpfsNode))
        return {(c, n): st.value for c, n, st in rows}


async def test_embedded_only_pack_is_replicated_with_target_one(harness: Harness) -> None:
    cid = await harness.make_pack()
    outcome = await harness.service.replicate_pack(cid)
    assert outcome.summary.embedded_only and outcome.summary.satisfied
    assert all(u.pinned == 1 and u.target.min == 1 for u in outcome.summary.units)
    assert await harness.service.embedded_only()


async def test_pack_goes_to_three_nodes_and_is_pack_atomic(harness: Harness) -> None:
    fakes = [await harness.add_fake(f"n{i}") for i in range(3)]
    cid = await harness.make_pack(shards=3)
    before = await harness.service.pack_replication(cid)
    assert not before.satisfied and before.min_pinned == 0
    outcome = await harness.service.replicate_pack(cid)
    assert outcome.summary.satisfied and outcome.summary.min_pinned == 3
    units = {u.unit.cid for u in outcome.summary.units}
    assert len(units) == 4  # three shards and the manifest
    for fake in fakes:
        assert fake.pins == units and fake.imports == 1  # one CAR per node carries the whole pack
    assert set((await states(harness)).values()) == {"pinned"}
    async with harness.sessions() as s:
        moved = (await s.execute(select(func.sum(Replica.bytes_moved)))).scalar_one()
    assert moved > 3 * 60_000
    counters = harness.service.counters.registry
    sent = [
        counters.get_sample_value("modelpack_replication_bytes_moved_total", {"node": f"n{i}"})
        for i in range(3)
    ]
    assert 0 <= sum(v or 0 for v in sent) - int(moved) < 3 * 4  # rows share a CAR by size, rounded down
    assert (
        counters.get_sample_value("modelpack_replication_pushes_total", {"node": "n0", "result": "ok"}) == 1
    )


async def test_running_again_sends_nothing_and_duplicates_nothing(harness: Harness) -> None:
    fakes = [await harness.add_fake(f"n{i}") for i in range(3)]
    cid = await harness.make_pack()
    await harness.service.replicate_pack(cid)
    again = await harness.service.replicate_pack(cid)
    assert again.pushed == {} and all(f.imports == 1 for f in fakes)
    async with harness.sessions() as s:
        assert (await s.execute(select(func.count()).select_from(Replica))).scalar_one() == 3 * 3


async def test_node_dying_mid_replication_is_marked_down_and_the_pack_repaired(harness: Harness) -> None:
    a, b, c = [await harness.add_fake(f"n{i}") for i in range(3)]
    c.down = True
    cid = await harness.make_pack()
    first = await harness.service.replicate_pack(cid)
    assert set(first.failed) == {"n2"} and "node_unreachable" in first.failed["n2"]
    assert first.summary.satisfied  # the target is capped by the two nodes left
    async with harness.sessions() as s:
        node = (await s.execute(select(IpfsNode).where(IpfsNode.name == "n2"))).scalar_one()
        assert node.state is NodeState.DOWN and node.down_since is not None
    d = await harness.add_fake("n3")
    second = await harness.service.replicate_pack(cid)
    assert set(second.pushed) == {"n3"} and second.summary.min_pinned == 3
    assert d.pins == a.pins == b.pins


async def test_replicate_handler_retries_while_below_min(harness: Harness) -> None:
    _a, b = await harness.add_fake("a"), await harness.add_fake("b")
    b.forget_pins = True  # says it imported, never pins: not confirmed
    cid = await harness.make_pack()
    from registry.jobs.protocol import ClaimedJob

    job = ClaimedJob(
        id=1, kind="replicate", payload={"pack": cid}, attempts=1, max_attempts=5, lease_token="t"
    )
    with pytest.raises(RetryJob, match="not fully replicated"):
        await harness.service.replicate(job)
    st = await states(harness)
    assert {v for (c, n), v in st.items() if n == "b"} == {"failed"}
    async with harness.sessions() as s:
        errs = set(
            (
                await s.execute(select(Replica.last_error).where(Replica.state == ReplicaState.FAILED))
            ).scalars()
        )
    assert any("not_pinned" in (e or "") for e in errs)


async def test_reconcile_notices_unpinned_replicas_and_requeues_the_pack(harness: Harness) -> None:
    a, _b, c = [await harness.add_fake(f"n{i}") for i in range(3)]
    cid = await harness.make_pack()
    await harness.service.replicate_pack(cid)
    c.pins.clear()  # a restarted node lost its pins
    enqueued = await harness.service.reconciler.reconcile_all()
    assert enqueued == [cid]
    st = await states(harness)
    assert {v for (u, n), v in st.items() if n == "n2"} == {"lost"}
    async with harness.sessions() as s:
        job = (await s.execute(select(Job).where(Job.dedupe_key == f"replicate:{cid}"))).scalar_one()
        assert job.state.value == "queued"
    repaired = await harness.service.replicate_pack(cid)
    assert repaired.summary.min_pinned == 3 and c.pins == a.pins


async def test_reconcile_on_a_clean_index_enqueues_nothing(harness: Harness) -> None:
    for i in range(2):
        await harness.add_fake(f"n{i}")
    cid = await harness.make_pack()
    await harness.service.replicate_pack(cid)
    assert await harness.service.reconciler.reconcile_all() == []


async def test_audit_catches_a_node_serving_wrong_bytes_and_repair_moves_the_copy(
    harness: Harness,
) -> None:
    a, _b = await harness.add_fake("a"), await harness.add_fake("b")
    liar = await harness.add_fake("liar")
    cid = await harness.make_pack()
    await harness.service.replicate_pack(cid)
    liar.serve_wrong = True
    result = await harness.service.upkeep.audit_batch()
    assert result["lost"] == 3 and result["ok"] == 6
    assert (
        harness.service.counters.registry.get_sample_value(
            "modelpack_replication_audits_total", {"node": "liar", "result": "lost"}
        )
        == 3
    )
    st = await states(harness)
    assert {v for (u, n), v in st.items() if n == "liar"} == {"lost"}
    async with harness.sessions() as s:
        reasons = set(
            (await s.execute(select(Replica.last_error).where(Replica.state == ReplicaState.LOST))).scalars()
        )
        assert all(r and r.startswith("audit: wrong bytes") for r in reasons)
        assert (await s.execute(select(Job.id).where(Job.dedupe_key == f"replicate:{cid}"))).first()
    summary = await harness.service.pack_replication(cid)
    assert summary.satisfied and summary.min_pinned == 2
    fresh = await harness.add_fake("fresh")
    repaired = await harness.service.replicate_pack(cid)
    assert set(repaired.pushed) == {"fresh"} and repaired.summary.min_pinned == 3
    assert fresh.pins == a.pins


async def test_audit_catches_a_missing_block(harness: Harness) -> None:
    _a, b = await harness.add_fake("a"), await harness.add_fake("b")
    cid = await harness.make_pack(shards=1)
    await harness.service.replicate_pack(cid)
    for key in list(b.blocks):
        if not key.startswith("bafybei") and key != cid:  # drop the shard leaves
            del b.blocks[key]
    result = await harness.service.upkeep.audit_batch()
    assert result["lost"] == 1  # the shard; the manifest block is still served


async def test_draining_node_hands_its_replicas_over_then_can_be_removed(harness: Harness) -> None:
    _a, _b, c = [await harness.add_fake(f"n{i}") for i in range(3)]
    await harness.service.replicate_pack(cid := await harness.make_pack())
    await harness.registry.set_draining("n2")
    from registry.errors import Conflict

    with pytest.raises(Conflict, match="drain it first"):
        await harness.registry.remove("n2")
    outcome = await harness.service.replicate_pack(cid)
    assert outcome.removed.get("n2") and not c.pins
    assert outcome.summary.satisfied and outcome.summary.min_pinned == 2
    assert await harness.registry.remove("n2") == 0


async def test_surplus_replicas_are_removed_when_max_drops(harness: Harness) -> None:
    fakes = [await harness.add_fake(f"n{i}") for i in range(3)]
    cid = await harness.make_pack()
    await harness.service.replicate_pack(cid)
    async with harness.sessions() as s, s.begin():
        from registry.db.models import Model

        await s.execute(update(Model).values(replication_min=1, replication_max=2))
    outcome = await harness.service.replicate_pack(cid)
    assert len(outcome.removed) == 1 and outcome.summary.min_pinned == 2
    assert sum(1 for f in fakes if f.pins) == 2


async def test_gc_collects_unreferenced_packs_but_keeps_shared_shards(harness: Harness) -> None:
    a, b = await harness.add_fake("a"), await harness.add_fake("b")
    shared = b"shared bytes " * 2000
    old = await harness.make_pack(shards=2, version="v1", shared=[shared])
    new = await harness.make_pack(shards=2, version="v2", shared=[shared])
    for cid in (old, new):
        await harness.service.replicate_pack(cid)
    async with harness.sessions() as s, s.begin():
        await s.execute(delete(Pointer).where(Pointer.pack_cid == old))
    harness.service.upkeep.config = harness.service.config = type(harness.service.config)(
        target=harness.service.config.target, down_grace_s=0.0, gc_retention_s=0.0
    )
    old_units = {u.unit.cid for u in (await harness.service.pack_replication(old)).units}
    new_units = {u.unit.cid for u in (await harness.service.pack_replication(new)).units}
    result = await harness.service.upkeep.collect_garbage()
    assert result["units"] == 2  # the old pack's own shard and its manifest; the shared shard stays
    for fake in (a, b):
        assert fake.pins == new_units
    gone = old_units - new_units
    assert not any(harness.store.has(c) for c in gone if not c.startswith("bafkrei"))
    assert all(harness.store.has(c) for c in new_units if c != normalize_cid(new))
    async with harness.sessions() as s:
        blobs = set((await s.execute(select(Blob.cid))).scalars())
    assert not (gone & blobs) and (new_units - {new}) <= blobs
    again = await harness.service.upkeep.collect_garbage()
    assert again["unpinned"] == 0 and again["deleted"] == 0
    assert (await harness.service.replicate_pack(old)).pushed == {}  # a dead pack is not re-pinned


async def test_a_satisfied_pack_with_one_failing_node_stops_retrying_after_a_few_attempts(
    harness: Harness,
) -> None:
    from registry.jobs.protocol import ClaimedJob

    for name in ("a", "b"):
        await harness.add_fake(name)
    broken = await harness.add_fake("broken")
    broken.forget_pins = True
    cid = await harness.make_pack()

    def job(attempts: int) -> ClaimedJob:
        return ClaimedJob(
            id=1, kind="replicate", payload={"pack": cid}, attempts=attempts, max_attempts=8, lease_token="t"
        )

    with pytest.raises(RetryJob, match="broken"):
        await harness.service.replicate(job(1))
    await harness.service.replicate(job(3))  # completes: min 2 is met, reconcile will try `broken` again
    assert (await harness.service.pack_replication(cid)).satisfied
