"""Reconcile: each up node's pinset against the index, then every live pack that needs work is queued for
`replicate`.

A pin the index believes in that the node no longer holds becomes `lost`; a push the index still has in
flight that the node already pins becomes `pinned`; pins the node holds for others are left alone. CIDs are
compared in their canonical spelling (pinner's ``normalize_cid``: nodes spell them differently).

The index is read a page at a time (keyset, ``PAGE`` rows), each page in its own short transaction, so the
handler's memory is bounded by the page and the node's pinset, however many packs and replicas there are.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.cids import normalize_cid
from pinner.ipfs.errors import NodeError
from pinner.replication.model import NodeView
from pinner.states import NodeKind, NodeState, ReplicaState
from registry.db.base import utcnow
from registry.db.models import IpfsNode, Manifest, Model, Pack, Pointer, PointerChange, Replica, Shard
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import ClaimedJob, JobQueue
from registry.replication.clients import BackendFactory
from registry.replication.nodes import NodeRegistry
from registry.replication.pin_units import enqueue_unsettled_pins
from registry.replication.rows import ReplicationConfig
from registry.replication.summary import (
    all_nodes,
    combined_target,
    node_view,
    plan_pack,
    replica_view,
    units_of,
)

log = logging.getLogger("modelpack.replication")
IN_FLIGHT = (ReplicaState.QUEUED, ReplicaState.PINNING)
PAGE = 1000  # rows (replicas of a node, packs) read per query


class NodePins:
    """A node's pinset as it spelled it, with the canonical spellings computed only when needed."""

    def __init__(self, spelled: set[str]) -> None:
        self._spelled = spelled
        self._canonical: set[str] | None = None

    def holds(self, cid: str) -> bool:
        """Whether the node pins ``cid`` (any spelling on either side)."""
        if cid in self._spelled:  # the same text is the same CID: nothing to decode
            return True
        if self._canonical is None:
            self._canonical = {normalize_cid(c) for c in self._spelled}
        return normalize_cid(cid) in self._canonical


class Reconciler:
    """The reconcile job handler."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        backends: BackendFactory,
        queue: JobQueue,
        nodes: NodeRegistry,
        config: ReplicationConfig,
    ) -> None:
        self._sessions = sessions
        self._backends = backends
        self._queue = queue
        self.nodes = nodes
        self.config = config

    async def reconcile(self, job: ClaimedJob) -> None:
        await self.reconcile_all()

    async def reconcile_all(self) -> list[str]:
        """Check each up node's pinset against the index, then enqueue every live pack that needs work.

        Returns the CIDs of the packs enqueued.
        """
        async with self._sessions() as s:
            nodes = [n for n in await all_nodes(s) if n.kind is not NodeKind.EMBEDDED]
        for node in nodes:
            if node.state is NodeState.UP:
                await self._reconcile_node(node)
        enqueued = await self._enqueue_needy()
        await enqueue_unsettled_pins(self._sessions, self._queue)  # pins are units too (pin_units.py)
        return enqueued

    async def _reconcile_node(self, node: IpfsNode) -> None:
        try:
            pins = NodePins({c async for c in self._backends.backend(node).list_pins()})
        except NodeError as exc:
            await self.nodes.record_health(
                node.id, version=None, peer_id=None, free_space=None, error=f"{exc.code}: {exc.message}"
            )
            return
        now = utcnow()
        judged = (ReplicaState.PINNED, *IN_FLIGHT)  # rows of other states are not the diff's business
        after = 0
        while True:
            async with self._sessions() as s, s.begin():
                page = select(Replica).where(
                    Replica.node_id == node.id, Replica.state.in_(judged), Replica.id > after
                )
                rows = list((await s.execute(page.order_by(Replica.id).limit(PAGE))).scalars())
                for row in rows:
                    held = pins.holds(row.cid)
                    if row.state is ReplicaState.PINNED and not held:
                        log.warning("reconcile: %s no longer pins %s; marking it lost", node.name, row.cid)
                        row.state, row.last_error = (
                            ReplicaState.LOST,
                            "the node no longer pins it (reconcile)",
                        )
                    elif row.state in IN_FLIGHT and held:
                        row.state, row.pinned_at, row.last_error = ReplicaState.PINNED, now, None
            if len(rows) < PAGE:
                return
            after = rows[-1].id

    async def _enqueue_needy(self) -> list[str]:
        """Every live pack (pointed at, named by pointer history within GC's retention, or that young) whose
        plan adds or removes a copy, or that has a copy being unpinned: queued for `replicate`, a page at a time."""
        now = utcnow()
        since = now - timedelta(seconds=self.config.gc_retention_s)
        async with self._sessions() as s:
            node_rows = [n for n in await all_nodes(s) if n.kind is not NodeKind.EMBEDDED]
        if not node_rows:
            return []
        nodes = [node_view(n) for n in node_rows]
        enqueued: list[str] = []
        after = ""
        while True:
            async with self._sessions() as s:
                page = select(Manifest.cid).where(Manifest.cid > after).order_by(Manifest.cid).limit(PAGE)
                cids = list((await s.execute(page)).scalars())
                needy = await self._needy(s, await _live_among(s, cids, since), nodes, now)
            for cid in needy:
                await self._queue.enqueue(
                    JobKind.REPLICATE, {"pack": cid}, dedupe_key=JobKind.REPLICATE.key(cid)
                )
            enqueued += needy
            if len(cids) < PAGE:
                break
            after = cids[-1]
        if enqueued:
            log.info("reconcile: %d pack(s) need replication work", len(enqueued))
        return enqueued

    async def _needy(
        self, s: AsyncSession, live: Sequence[str], nodes: Sequence[NodeView], now: datetime
    ) -> list[str]:
        """Which of these packs need work: each planned from its units, target and replicas (read in bulk)."""
        if not live:
            return []
        sized = select(Manifest.cid, func.length(Manifest.manifest)).where(Manifest.cid.in_(live))
        sizes: dict[str, int] = {cid: size for cid, size in (await s.execute(sized)).all()}
        shards: dict[str, list[Shard]] = defaultdict(list)
        rows = select(Shard).where(Shard.pack_cid.in_(live)).order_by(Shard.pack_cid, Shard.position)
        for shard in (await s.execute(rows)).scalars():
            shards[shard.pack_cid].append(shard)
        overrides: dict[str, list[tuple[int | None, int | None]]] = defaultdict(list)
        listed = select(Pack.cid, Model.replication_min, Model.replication_max).join(
            Model, Model.id == Pack.model_id
        )
        for cid, lo, hi in (await s.execute(listed.where(Pack.cid.in_(live)))).all():
            overrides[cid].append((lo, hi))
        units = {cid: units_of(cid, sizes[cid], shards[cid]) for cid in live if cid in sizes}
        replicas = defaultdict(list)
        wanted = sorted({u.cid for us in units.values() for u in us})
        for i in range(0, len(wanted), PAGE):
            for r in (
                await s.execute(select(Replica).where(Replica.cid.in_(wanted[i : i + PAGE])))
            ).scalars():
                replicas[r.cid].append(replica_view(r))
        needy = []
        for cid, pack_units in units.items():
            target = combined_target(overrides[cid], self.config.target)
            reps = [r for c in dict.fromkeys(u.cid for u in pack_units) for r in replicas[c]]
            plans = plan_pack(pack_units, target, nodes, reps, now=now, down_grace=self.config.down_grace)
            if any(p.add or p.remove for p in plans) or any(r.state is ReplicaState.UNPINNING for r in reps):
                needy.append(cid)
        return needy


async def _live_among(s: AsyncSession, cids: Sequence[str], since: datetime) -> list[str]:
    """Those of ``cids`` GC must keep (``summary.live_pack_cids``' rule), sorted."""
    if not cids:
        return []
    live = set((await s.execute(select(Pointer.pack_cid).where(Pointer.pack_cid.in_(cids)))).scalars())
    moved = select(PointerChange.from_cid, PointerChange.to_cid).where(
        PointerChange.at >= since, or_(PointerChange.from_cid.in_(cids), PointerChange.to_cid.in_(cids))
    )
    for from_cid, to_cid in (await s.execute(moved)).all():
        live.update(c for c in (from_cid, to_cid) if c)
    young = select(Pack.cid).where(Pack.cid.in_(cids), Pack.created_at >= since)
    live.update((await s.execute(young)).scalars())
    return sorted(live.intersection(cids))
