"""Replica upkeep: audits (sampled blocks re-hashed; a miss or mismatch marks the replica lost and queues
repair) and reference-aware garbage collection (units of packs nothing refers to are unpinned and
deleted, never one a live pack shares).
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from typing import Any

from multiformats import CID
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore
from pinner.cids import normalize_cid
from pinner.content_errors import BlockNotFound
from pinner.ipfs.errors import NodeError, NodeUnreachableError
from pinner.ipfs.protocol import IpfsNode as BlockNode
from pinner.ipfs.protocol import PinBackend
from pinner.replication.audit import audit_replica, dag_block_cids
from pinner.states import NodeState, ReplicaState
from registry.db.base import utcnow
from registry.db.models import Blob, IpfsNode, Manifest, Replica, Shard
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import ClaimedJob, JobQueue
from registry.replication.clients import BackendFactory
from registry.replication.nodes import NodeRegistry
from registry.replication.pin_units import enqueue_pins_of, pin_holds
from registry.replication.rows import (
    ReplicationConfig,
    ReplicationCounters,
    set_rows,
    unpin_units,
)
from registry.replication.summary import all_nodes, is_live, live_pack_cids, pack_units, replicas_for

log = logging.getLogger("modelpack.replication")


class Upkeep:
    """The audit and gc job handlers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: FsBlockstore,
        backends: BackendFactory,
        queue: JobQueue,
        nodes: NodeRegistry,
        config: ReplicationConfig,
        counters: ReplicationCounters,
        rng: random.Random,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._backends = backends
        self._queue = queue
        self.nodes = nodes
        self.config = config
        self.counters = counters
        self._rng = rng

    # -- audit ----------------------------------------------------------------------------------

    async def audit(self, job: ClaimedJob) -> None:
        await self.audit_batch()

    async def audit_batch(self) -> dict[str, int]:
        """Audit the least recently audited pinned replicas on up nodes; returns counts by result."""
        async with self._sessions() as s:
            picked = (
                await s.execute(
                    select(Replica, IpfsNode)
                    .join(IpfsNode, Replica.node_id == IpfsNode.id)
                    .where(Replica.state == ReplicaState.PINNED, IpfsNode.state == NodeState.UP)
                    .order_by(Replica.last_audit_at.asc().nulls_first(), Replica.id)
                    .limit(self.config.audit_batch)
                )
            ).all()
        results = {"ok": 0, "lost": 0, "skipped": 0}
        lost: list[str] = []
        for replica, node in picked:
            verdict = await self._audit_one(replica, node)
            results[verdict] += 1
            if verdict == "lost":
                lost.append(replica.cid)
        for cid in sorted(set(lost)):
            await self._enqueue_packs_of(cid)
        return results

    async def _audit_one(self, replica: Replica, node: IpfsNode) -> str:
        backend = self._backends.backend(node)
        try:
            reason = await self._audit_reason(backend, replica.cid)
        except NodeUnreachableError as exc:
            await self.nodes.record_health(
                node.id, version=None, peer_id=None, free_space=None, error=f"{exc.code}: {exc.message}"
            )
            return "skipped"
        except NodeError as exc:
            log.info("audit of %s on %s inconclusive: %s", replica.cid, node.name, exc.message)
            return "skipped"
        now = utcnow()
        async with self._sessions() as s, s.begin():
            values: dict[str, Any] = {"last_audit_at": now}
            if reason is not None:
                values |= {"state": ReplicaState.LOST, "last_error": f"audit: {reason}"[:2000]}
            await s.execute(
                update(Replica)
                .where(Replica.id == replica.id, Replica.state == ReplicaState.PINNED)
                .values(**values)
            )
        verdict = "ok" if reason is None else "lost"
        self.counters.audits.labels(node.name, verdict).inc()
        if reason is not None:
            log.warning("audit: replica of %s on %s is lost: %s", replica.cid, node.name, reason)
        return verdict

    async def _audit_reason(self, backend: PinBackend, cid: str) -> str | None:
        """None when the replica passed; else why it is lost."""
        if not isinstance(backend, BlockNode):  # an orchestrator only answers for its pin state
            status = await backend.pin_status(cid)
            return None if status.state.value == "pinned" else f"the service reports it {status.state.value}"
        blocks = await self.unit_blocks(cid, backend)
        result = await audit_replica(
            backend, cid, blocks, sample=self.config.audit_sample_blocks, rng=self._rng
        )
        return result.reason

    async def unit_blocks(self, cid: str, node: BlockNode | None = None) -> list[str]:
        """Every block CID of a unit: the DAG walked in our blockstore, else (verified) on `node`."""
        if self._store.has(cid):

            async def local(c: str) -> bytes:
                return await asyncio.to_thread(self._store.get_block, c)

            return await dag_block_cids(cid, local)
        if CID.decode(cid).codec.name == "raw" or node is None:
            return [cid]
        return await dag_block_cids(cid, node.get_block)

    async def _enqueue_packs_of(self, cid: str) -> None:
        async with self._sessions() as s:
            packs = set((await s.execute(select(Shard.pack_cid).where(Shard.cid == cid))).scalars())
            if (await s.get(Manifest, cid)) is not None:
                packs.add(cid)
        for pack in sorted(packs):
            await self._queue.enqueue(
                JobKind.REPLICATE, {"pack": pack}, dedupe_key=JobKind.REPLICATE.key(pack)
            )
        await enqueue_pins_of(self._sessions, self._queue, cid)

    # -- garbage collection ---------------------------------------------------------------------

    async def gc(self, job: ClaimedJob) -> None:
        await self.collect_garbage()

    async def collect_garbage(self) -> dict[str, int]:
        """Unpin and delete the units of packs nothing refers to any more, keeping anything a live pack uses.

        The selection is a snapshot: a pack published (or a pointer moved) after it may need a doomed unit.
        So each unit is checked again right before it is unpinned, and its deletion re-checks liveness in
        the transaction that removes its blob row (the row is deleted first: on Postgres that waits for a
        publish holding the row ``FOR SHARE``, whose shards the re-check then sees); the file goes after
        that commit, only when nothing live needed it.
        """
        dead_packs, doomed, rows, nodes = await self._select_garbage()
        unpinned = 0
        by_node: dict[int, list[str]] = {}
        async with self._sessions() as s:
            needed = {c for c in {r.cid for r in rows} if await self._still_needed(s, c)}
        for r in rows:
            if r.cid not in needed:
                by_node.setdefault(r.node_id, []).append(r.cid)
        for nid, cids in by_node.items():
            node = nodes.get(nid)
            if node is not None and node.state is NodeState.UP:
                unpinned += len(await unpin_units(self._sessions, self._backends.backend(node), nid, cids))
            else:  # the node is away: keep the rows as unpinning, the next pass tries again
                await set_rows(self._sessions, nid, cids, state=ReplicaState.UNPINNING)
        deleted = kept = 0
        for cid in sorted(doomed):
            try:
                async with self._sessions() as s, s.begin():
                    await s.execute(delete(Blob).where(Blob.cid == cid))
                    if await self._still_needed(s, cid):
                        raise _StillNeeded(cid)
            except _StillNeeded:
                kept += 1
                continue
            try:
                await asyncio.to_thread(self._store.delete_file, cid)
                deleted += 1
            except BlockNotFound:
                pass
        if doomed:
            log.info(
                "gc: %d unit(s) of %d unreferenced pack(s): %d unpinned, %d files deleted, %d needed again",
                len(doomed),
                len(dead_packs),
                unpinned,
                deleted,
                kept,
            )
        return {"packs": len(dead_packs), "units": len(doomed), "unpinned": unpinned, "deleted": deleted}

    async def _select_garbage(
        self,
    ) -> tuple[list[str], set[str], list[Replica], dict[int, IpfsNode]]:
        """The snapshot gc works from: dead packs, their units no live pack shares, their replicas, nodes."""
        now = utcnow()
        async with self._sessions() as s:
            live = await live_pack_cids(s, timedelta(seconds=self.config.gc_retention_s), now)
            dead_packs = [p for p in (await s.execute(select(Manifest.cid))).scalars() if p not in live]
            keep = {normalize_cid(c) for c in live}
            if live:
                keep |= {
                    normalize_cid(c)
                    for c in (await s.execute(select(Shard.cid).where(Shard.pack_cid.in_(live)))).scalars()
                }
            doomed: set[str] = set()
            for cid in dead_packs:
                pack = await s.get(Manifest, cid)
                if pack is not None:
                    doomed |= {u.cid for u in await pack_units(s, pack)} - keep
            rows = await replicas_for(s, sorted(doomed))
            nodes = {n.id: n for n in await all_nodes(s)}
        return dead_packs, doomed, rows, nodes

    async def _still_needed(self, s: AsyncSession, cid: str) -> bool:
        """Whether a pack that is live now (in ``s``'s view) uses the unit ``cid`` (a shard or its manifest)."""
        if await pin_holds(s, cid):  # a Pinning Service API pin holds it
            return True
        retention = timedelta(seconds=self.config.gc_retention_s)
        users = set((await s.execute(select(Shard.pack_cid).where(Shard.cid == cid))).scalars())
        users.add(cid)  # the unit may be a pack's manifest
        now = utcnow()
        for pack_cid in sorted(users):
            if await is_live(s, pack_cid, retention, now):
                return True
        return False


class _StillNeeded(Exception):
    """A unit gc selected is used by a live pack after all: its deletion is rolled back."""
