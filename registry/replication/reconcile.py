"""Reconcile: each up node's pinset against the index (pinner's diff decides), then every live pack that
needs work is queued for `replicate`.

A pin the index believes in that the node no longer holds becomes `lost`; a push the index still has in
flight that the node already pins becomes `pinned`; pins the node holds for others are left alone.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.cids import normalize_cid
from pinner.ipfs.errors import NodeError
from pinner.replication.reconcile import diff_pins, node_pinset
from pinner.states import NodeKind, NodeState, ReplicaState
from registry.db.base import utcnow
from registry.db.models import IpfsNode, Manifest, Replica
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import ClaimedJob, JobQueue
from registry.replication.clients import BackendFactory
from registry.replication.nodes import NodeRegistry
from registry.replication.pin_units import enqueue_unsettled_pins
from registry.replication.rows import ReplicationConfig
from registry.replication.summary import (
    all_nodes,
    live_pack_cids,
    node_view,
    pack_target,
    pack_units,
    plan_pack,
    replica_view,
    replicas_for,
)

log = logging.getLogger("modelpack.replication")
IN_FLIGHT = (ReplicaState.QUEUED, ReplicaState.PINNING)


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
            actual = await node_pinset(self._backends.backend(node))
        except NodeError as exc:
            await self.nodes.record_health(
                node.id, version=None, peer_id=None, free_space=None, error=f"{exc.code}: {exc.message}"
            )
            return
        now = utcnow()
        async with self._sessions() as s, s.begin():
            rows = list((await s.execute(select(Replica).where(Replica.node_id == node.id))).scalars())
            drift = diff_pins(
                pinned=[r.cid for r in rows if r.state is ReplicaState.PINNED],
                in_flight=[r.cid for r in rows if r.state in IN_FLIGHT],
                actual=actual,
            )
            for row in rows:
                cid = normalize_cid(row.cid)
                if row.state is ReplicaState.PINNED and cid in drift.missing:
                    log.warning("reconcile: %s no longer pins %s; marking it lost", node.name, row.cid)
                    row.state, row.last_error = ReplicaState.LOST, "the node no longer pins it (reconcile)"
                elif row.state in IN_FLIGHT and cid in drift.completed:
                    row.state, row.pinned_at, row.last_error = ReplicaState.PINNED, now, None

    async def _enqueue_needy(self) -> list[str]:
        now = utcnow()
        retention = timedelta(seconds=self.config.gc_retention_s)
        enqueued = []
        async with self._sessions() as s:
            live = await live_pack_cids(s, retention, now)
            node_rows = [n for n in await all_nodes(s) if n.kind is not NodeKind.EMBEDDED]
            if not node_rows:
                return []
            nodes = [node_view(n) for n in node_rows]
            for cid in sorted(live):
                pack = await s.get(Manifest, cid)
                if pack is None:
                    continue
                units = await pack_units(s, pack)
                target = await pack_target(s, pack, self.config.target)
                reps = [replica_view(r) for r in await replicas_for(s, [u.cid for u in units])]
                plans = plan_pack(units, target, nodes, reps, now=now, down_grace=self.config.down_grace)
                if any(p.add or p.remove for p in plans) or any(
                    r.state is ReplicaState.UNPINNING for r in reps
                ):
                    enqueued.append(cid)
        for cid in enqueued:
            await self._queue.enqueue(JobKind.REPLICATE, {"pack": cid}, dedupe_key=JobKind.REPLICATE.key(cid))
        if enqueued:
            log.info("reconcile: %d pack(s) need replication work", len(enqueued))
        return enqueued
