"""The production reconcile (the `reconcile` job handler) on a real index with fake nodes: pinner's diff
decides, every CID spelling a node uses is understood, and pins the node holds for others are left alone."""

from __future__ import annotations

import pytest
from multiformats import CID
from sqlalchemy import func, select, update

from pinner.states import ReplicaState
from registry.db.jobs import Job
from registry.db.models import IpfsNode, Manifest, Replica
from registry.jobs.protocol import ClaimedJob
from registry.replication import reconcile
from registry.replication.summary import pack_units
from tests.registry.replication.conftest import Harness

FOREIGN = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"  # pinned by someone else on the same node
JOB = ClaimedJob(id=1, kind="reconcile", payload={}, attempts=1, max_attempts=5, lease_token="t")


async def states(h: Harness) -> dict[tuple[str, str], ReplicaState]:
    async with h.sessions() as s:
        rows = await s.execute(select(Replica.cid, IpfsNode.name, Replica.state).join(IpfsNode))
        return {(c, n): st for c, n, st in rows}


async def node_id(h: Harness, name: str) -> int:
    async with h.sessions() as s:
        return (await s.execute(select(IpfsNode.id).where(IpfsNode.name == name))).scalar_one()


async def test_the_reconcile_job_records_the_drift_of_each_node(harness: Harness) -> None:
    a, b, c = [await harness.add_fake(f"n{i}") for i in range(3)]
    cid = await harness.make_pack()
    await harness.service.replicate_pack(cid)
    units = sorted(a.pins)
    a.pins.add(FOREIGN)
    b.pins = {str(CID.decode(u).set(base="base58btc")) for u in units}  # js-ipfs spells CIDs this way
    c.pins.discard(units[0])  # a restarted node lost one pin
    # A push to n0 that finished without the index seeing it, and one to n1 that has not happened yet.
    a_id, b_id = await node_id(harness, "n0"), await node_id(harness, "n1")
    async with harness.sessions() as s, s.begin():
        await s.execute(
            update(Replica)
            .where(Replica.node_id == a_id, Replica.cid == units[1])
            .values(state=ReplicaState.PINNING)
        )
        await s.execute(
            update(Replica)
            .where(Replica.node_id == b_id, Replica.cid == units[1])
            .values(state=ReplicaState.QUEUED)
        )
    b.pins.discard(str(CID.decode(units[1]).set(base="base58btc")))

    await harness.service.handlers()["reconcile"](JOB)

    st = await states(harness)
    assert st[(units[0], "n2")] is ReplicaState.LOST
    assert {st[(u, "n2")] for u in units[1:]} == {ReplicaState.PINNED}
    assert st[(units[1], "n0")] is ReplicaState.PINNED  # completed unseen: confirmed
    assert st[(units[1], "n1")] is ReplicaState.QUEUED  # still to do: left for replicate
    assert {st[(u, "n1")] for u in units if u != units[1]} == {ReplicaState.PINNED}  # base58 = same CID
    async with harness.sessions() as s:
        assert (await s.execute(select(func.count()).where(Replica.cid == FOREIGN))).scalar_one() == 0
        job = (await s.execute(select(Job).where(Job.dedupe_key == f"replicate:{cid}"))).scalar_one()
        assert job.state.value == "queued"
    assert FOREIGN in a.pins  # never unpinned: not ours


async def test_an_unreachable_node_is_marked_down_and_its_rows_kept(harness: Harness) -> None:
    _a, b = await harness.add_fake("n0"), await harness.add_fake("n1")
    cid = await harness.make_pack()
    await harness.service.replicate_pack(cid)
    before = await states(harness)
    b.down = True
    await harness.service.handlers()["reconcile"](JOB)
    assert await states(harness) == before
    async with harness.sessions() as s:
        node = (await s.execute(select(IpfsNode).where(IpfsNode.name == "n1"))).scalar_one()
        assert node.state.value == "down" and "node_unreachable" in (node.last_error or "")


async def test_reconcile_pages_through_replicas_and_packs(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of one row: every replica and every live pack is still judged once, across page boundaries."""
    monkeypatch.setattr(reconcile, "PAGE", 1)
    a, b = await harness.add_fake("n0"), await harness.add_fake("n1")
    cids = [await harness.make_pack(version=f"v{i}") for i in range(3)]
    for cid in cids:
        await harness.service.replicate_pack(cid)
    by_pack = {}
    async with harness.sessions() as s:
        for cid in cids:
            manifest = await s.get(Manifest, cid)
            assert manifest is not None
            by_pack[cid] = [u.cid for u in await pack_units(s, manifest)]
    lost = {by_pack[cids[0]][0], by_pack[cids[2]][-1]}  # the first pack's first unit, the last's manifest
    b.pins -= lost
    flying = by_pack[cids[1]][1]
    a_id = await node_id(harness, "n0")
    async with harness.sessions() as s, s.begin():
        await s.execute(
            update(Replica)
            .where(Replica.node_id == a_id, Replica.cid == flying)
            .values(state=ReplicaState.PINNING)
        )

    enqueued = await harness.service.reconciler.reconcile_all()

    st = await states(harness)
    assert {u for (u, n), v in st.items() if v is ReplicaState.LOST} == lost
    assert all(n == "n1" for (u, n), v in st.items() if v is ReplicaState.LOST)
    assert st[(flying, "n0")] is ReplicaState.PINNED
    assert sorted(enqueued) == sorted([cids[0], cids[2]])  # each needy pack once, the others not
    assert a.pins >= {u for us in by_pack.values() for u in us}
