"""The replication service: job handlers that keep every live pack on enough nodes, and say so.

`replicate` (plan, push, confirm, trim; reaching or losing the target is an event), `reconcile`, `audit`, `gc`:
the logic is `pinner.replication`'s, this module reads and writes the index around it. Idempotent throughout.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.blockstore import FsBlockstore
from pinner.cids import normalize_cid
from pinner.errors import PinnerError
from pinner.ipfs.errors import NodeError, NodeUnreachableError
from pinner.ipfs.protocol import IpfsNode as BlockNode
from pinner.ipfs.protocol import PinBackend, PinState
from pinner.replication.mover import BlockSource, Mover, MoverConfig
from pinner.replication.placement import remote_nodes
from pinner.states import NodeKind, NodeState, ReplicaState
from registry.db.base import utcnow
from registry.db.engine import readonly_session, write_session
from registry.db.models import IpfsNode, Manifest, Replica
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import ClaimedJob, JobQueue, PermanentJobError, RetryJob
from registry.jobs.worker import Handler
from registry.replication.clients import BackendFactory
from registry.replication.nodes import NodeRegistry, check_health
from registry.replication.reconcile import Reconciler
from registry.replication.rows import (
    ReplicationConfig,
    ReplicationCounters,
    mark_queued,
    record_pinned,
    set_rows,
    unpin_units,
)
from registry.replication.source import PackSource
from registry.replication.summary import (
    ReplicationSummary,
    all_nodes,
    is_live,
    node_view,
    pack_replication,
    pack_target,
    pack_units,
    plan_pack,
    replica_view,
    replicas_for,
    summarize,
)
from registry.replication.target_events import note_target
from registry.replication.upkeep import Upkeep

log = logging.getLogger("modelpack.replication")


@dataclass(frozen=True)
class ReplicateOutcome:
    pack_cid: str
    pushed: dict[str, tuple[str, ...]]  # node name -> CIDs confirmed pinned by this run
    failed: dict[str, str]  # node name -> error
    removed: dict[str, tuple[str, ...]]
    summary: ReplicationSummary


class ReplicationService:
    """Keeps packs replicated; one instance per daemon, shared by its job handlers and loops."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: FsBlockstore,
        backends: BackendFactory,
        queue: JobQueue,
        nodes: NodeRegistry,
        config: ReplicationConfig = ReplicationConfig(),
        *,
        mover_config: MoverConfig = MoverConfig(),
        counters: ReplicationCounters | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._backends = backends
        self._queue = queue
        self.nodes = nodes
        self.config = config
        self.mover = Mover(store, mover_config)
        self.counters = counters or ReplicationCounters()
        self.upkeep = Upkeep(
            sessions, store, backends, queue, nodes, config, self.counters, rng or random.Random()
        )
        self.reconciler = Reconciler(sessions, backends, queue, nodes, config)

    def handlers(self) -> dict[str, Handler]:
        return {
            "replicate": self.replicate,
            "reconcile": self.reconciler.reconcile,
            "audit": self.upkeep.audit,
            "gc": self.upkeep.gc,
        }

    async def pack_replication(self, pack_cid: str) -> ReplicationSummary:
        async with readonly_session(self._sessions) as s:
            return await pack_replication(
                s, pack_cid, defaults=self.config.target, down_grace=self.config.down_grace
            )

    # -- replicate ------------------------------------------------------------------------------

    async def replicate(self, job: ClaimedJob) -> None:
        cid = job.payload.get("pack")
        if not isinstance(cid, str):
            raise PermanentJobError(f"replicate job {job.id} has no pack CID in its payload")
        outcome = await self.replicate_pack(cid)
        await note_target(self._sessions, outcome.summary)
        # Below the minimum: retry until the queue gives up. Above it with some node failing: a few
        # retries, then the job completes and the periodic reconcile tries that node again later.
        retry_failures = outcome.failed and job.attempts < self.config.max_failed_attempts
        if retry_failures or not outcome.summary.satisfied:
            why = "; ".join(f"{n}: {e}" for n, e in outcome.failed.items()) or "below replication_min"
            raise RetryJob(f"pack {cid} not fully replicated yet ({why})")

    async def replicate_pack(self, pack_cid: str) -> ReplicateOutcome:
        """Plan every unit of the pack once, push what is missing, remove what is surplus; idempotent.

        The outcome's summary is that plan's, updated with what this run did (no second planning pass).
        """
        now = utcnow()
        async with self._sessions() as s:
            pack = await s.get(Manifest, pack_cid)  # the content: replicas are per CID, whatever lists it
            if pack is None:
                raise PermanentJobError(f"no pack {pack_cid} to replicate")
            live = await is_live(s, pack_cid, timedelta(seconds=self.config.gc_retention_s), now)
            units = await pack_units(s, pack)
            target = await pack_target(s, pack, self.config.target)
            node_rows = {n.id: n for n in await all_nodes(s) if n.kind is not NodeKind.EMBEDDED}
            rows = await replicas_for(s, [u.cid for u in units])
            manifest = {normalize_cid(pack.cid): pack.manifest}
        states = {(r.cid, r.node_id): r.state for r in rows}
        views = {nid: node_view(n) for nid, n in node_rows.items()}

        def summary() -> ReplicationSummary:
            return summarize(
                pack.cid,
                units,
                target,
                list(node_rows.values()),
                states,
                now=now,
                down_grace=self.config.down_grace,
                nodes=list(views.values()),
            )

        if not live:
            log.info("pack %s is not referenced any more; not replicating it (gc will collect it)", pack_cid)
            return ReplicateOutcome(pack_cid, {}, {}, {}, summary())
        if not node_rows:
            log.info("no IPFS node configured: the embedded blockstore is the one replica of %s", pack_cid)
            return ReplicateOutcome(pack_cid, {}, {}, {}, summary())
        plans = plan_pack(
            units,
            target,
            list(views.values()),
            [replica_view(r) for r in rows],
            now=now,
            down_grace=self.config.down_grace,
            max_failed_attempts=self.config.max_failed_attempts,
        )
        adds: dict[int, list[str]] = {}
        removes: dict[int, list[str]] = {}
        for plan in plans:
            for nid in plan.add:
                adds.setdefault(nid, []).append(plan.cid)
            for nid in plan.remove:
                removes.setdefault(nid, []).append(plan.cid)
        for r in rows:  # unpins that failed before are tried again
            node = node_rows.get(r.node_id)
            if r.state is ReplicaState.UNPINNING and node is not None and node.state is NodeState.UP:
                removes.setdefault(r.node_id, []).append(r.cid)
        await mark_queued(self._sessions, adds)
        sizes = {u.cid: u.size for u in units}
        source = PackSource(self._store, manifest)
        pushed: dict[str, tuple[str, ...]] = {}
        failed: dict[str, str] = {}
        went_down: set[int] = set()
        # Nodes we can send blocks to go first, so orchestrators can fetch from them as origins.
        first = [nid for nid in adds if node_rows[nid].kind is NodeKind.KUBO]
        later = [nid for nid in adds if node_rows[nid].kind is not NodeKind.KUBO]
        for wave in (first, later):
            placed: list[tuple[int, str, int]] = []  # (node, unit, bytes moved) of the wave's pushes
            results = await asyncio.gather(
                *(
                    self._push(node_rows[nid], adds[nid], sizes, source, pack_cid, went_down, placed)
                    for nid in wave
                )
            )
            # one transaction for the wave's placed units, committed before the next wave asks for origins
            await record_pinned(self._sessions, placed)
            for nid, (ok, detail) in zip(wave, results, strict=True):
                if ok:
                    pushed[node_rows[nid].name] = tuple(adds[nid])
                else:
                    failed[node_rows[nid].name] = detail
                for cid in adds[nid]:
                    states[(cid, nid)] = ReplicaState.PINNED if ok else ReplicaState.FAILED
        for nid in went_down:  # what this run learned of a node counts in its summary
            views[nid] = replace(views[nid], state=NodeState.DOWN, down_since=views[nid].down_since or now)
        removed: dict[str, tuple[str, ...]] = {}
        for nid, cids in removes.items():
            done = await self._unpin(node_rows[nid], sorted(set(cids)))
            if done:
                removed[node_rows[nid].name] = tuple(done)
            for cid in cids:
                if cid in done:
                    states.pop((cid, nid), None)
                else:
                    states[(cid, nid)] = ReplicaState.UNPINNING
        outcome = ReplicateOutcome(pack_cid, pushed, failed, removed, summary())
        log.info(
            "replicate %s: pushed to [%s], failed on [%s], removed from [%s]; %s (min pinned %d)",
            pack_cid,
            ",".join(sorted(pushed)),
            ",".join(sorted(failed)),
            ",".join(sorted(removed)),
            "replicated" if outcome.summary.satisfied else "NOT replicated",
            outcome.summary.min_pinned,
        )
        return outcome

    async def _set_rows(self, node_id: int, cids: Sequence[str], **values: Any) -> None:
        await set_rows(self._sessions, node_id, cids, **values)

    async def _origins(self, cids: Sequence[str], exclude: int) -> tuple[str, ...]:
        """Multiaddrs of up Kubo nodes that pin any of `cids` (for a node that must fetch them itself)."""
        async with self._sessions() as s:
            holder_ids = (
                await s.execute(
                    select(Replica.node_id)
                    .join(IpfsNode, Replica.node_id == IpfsNode.id)
                    .where(
                        Replica.cid.in_(list(cids)),
                        Replica.state == ReplicaState.PINNED,
                        IpfsNode.kind == NodeKind.KUBO,
                        IpfsNode.state == NodeState.UP,
                        IpfsNode.id != exclude,
                    )
                    .distinct()
                )
            ).scalars()
            holder_rows = [n for n in [await s.get(IpfsNode, i) for i in set(holder_ids)] if n is not None]
        out: list[str] = []
        for row in holder_rows:
            try:
                info = await self._backends.backend(row).info()
            except NodeError:
                continue
            out.extend(a for a in info.addresses if "/p2p/" in a)
        return tuple(dict.fromkeys(out))

    @staticmethod
    async def _all_pinned(backend: PinBackend, cids: Sequence[str]) -> bool:
        for cid in cids:
            if (await backend.pin_status(cid)).state is not PinState.PINNED:
                return False
        return True

    async def _push(
        self,
        node: IpfsNode,
        cids: list[str],
        sizes: dict[str, int],
        source: BlockSource,
        pack_cid: str,
        went_down: set[int],
        placed: list[tuple[int, str, int]],
    ) -> tuple[bool, str]:
        """Push `cids` to `node` and record a failure's rows; `placed` gets (node id, unit, bytes moved) of each
        unit pinned (the caller records them), `went_down` the node's id if it was unreachable."""
        backend = self._backends.backend(node)
        await self._set_rows(node.id, cids, state=ReplicaState.PINNING)
        try:
            need_origins = not isinstance(backend, BlockNode) or not all(source.has(c) for c in cids)
            origins = await self._origins(cids, node.id) if need_origins else ()
            if need_origins and not origins and not await self._all_pinned(backend, cids):
                # A pin/add with nowhere to fetch from would only wait out its timeout.
                detail = "no reachable copy: the bytes are not in this daemon's blockstore nor pinned on an up node"
                await self._set_rows(node.id, cids, state=ReplicaState.FAILED, last_error=detail)
                return False, detail
            result = await self.mover.push(
                backend, cids, origins=origins, source=source, name=f"modelpack {pack_cid}"
            )
        except NodeError as exc:
            detail = f"{exc.code}: {exc.message}"
            log.warning(
                "replica of %d unit(s) of %s on %s failed: %s", len(cids), pack_cid, node.name, detail
            )
            async with write_session(self._sessions) as s:
                await s.execute(
                    update(Replica)
                    .where(Replica.node_id == node.id, Replica.cid.in_(cids))
                    .values(
                        state=ReplicaState.FAILED, attempts=Replica.attempts + 1, last_error=detail[:2000]
                    )
                )
            self.counters.pushes.labels(node.name, "failed").inc()
            if isinstance(exc, NodeUnreachableError):
                went_down.add(node.id)
                await self.nodes.record_health(
                    node.id, version=None, peer_id=None, free_space=None, error=detail
                )
            return False, detail
        except PinnerError as exc:  # our own copy is missing or corrupt: not the node's fault
            detail = f"{exc.code}: {exc.message} (in this daemon's blockstore)"
            log.error("replica of %s on %s cannot be sent: %s", pack_cid, node.name, detail)
            await self._set_rows(node.id, cids, state=ReplicaState.FAILED, last_error=detail[:2000])
            self.counters.pushes.labels(node.name, "failed").inc()
            return False, detail
        total = sum(sizes.get(c, 0) for c in cids) or 1
        placed.extend((node.id, cid, result.bytes_moved * sizes.get(cid, 0) // total) for cid in cids)
        self.counters.bytes_moved.labels(node.name).inc(result.bytes_moved)
        self.counters.pushes.labels(node.name, "ok").inc()
        return True, result.method

    async def _unpin(self, node: IpfsNode, cids: list[str]) -> list[str]:
        return await unpin_units(self._sessions, self._backends.backend(node), node.id, cids)

    # -- health and status ----------------------------------------------------------------------

    async def check_nodes(self) -> dict[str, str]:
        """One health pass over every node; a node that changes state triggers a reconcile."""
        async with self._sessions() as s:
            nodes = [n for n in await all_nodes(s) if n.kind is not NodeKind.EMBEDDED]
        out = {}
        changed = False
        # Concurrently (one hanging node must not delay the others); any failure is that node's verdict.
        checks = await asyncio.gather(
            *(check_health(self._backends.backend, n) for n in nodes), return_exceptions=True
        )
        for node, check in zip(nodes, checks, strict=True):
            if isinstance(check, BaseException):
                log.error("health check of node %s failed unexpectedly: %r", node.name, check)
                check = (None, None, None, f"node_error: health check failed ({type(check).__name__})")
            version, peer_id, free, error = check
            before, after = await self.nodes.record_health(
                node.id, version=version, peer_id=peer_id, free_space=free, error=error
            )
            out[node.name] = after.value
            if before is not after:
                changed = True
                log.info(
                    "node %s is %s (was %s)%s",
                    node.name,
                    after.value,
                    before.value,
                    f": {error}" if error else "",
                )
        if changed:
            await self._queue.enqueue(JobKind.RECONCILE, {}, dedupe_key=JobKind.RECONCILE.key())
        return out

    async def request_reconcile(self) -> None:
        """Queue a reconcile now (after a node is drained or removed), once however often asked."""
        await self._queue.enqueue(JobKind.RECONCILE, {}, dedupe_key=JobKind.RECONCILE.key())

    async def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(nodes by state, replicas by state), for status and metrics."""
        async with readonly_session(self._sessions) as s:
            nodes = await s.execute(
                select(IpfsNode.state, func.count())
                .where(IpfsNode.kind != NodeKind.EMBEDDED)
                .group_by(IpfsNode.state)
            )
            node_counts = {NodeState(st).value: int(n) for st, n in nodes}
            reps = await s.execute(select(Replica.state, func.count()).group_by(Replica.state))
            replica_counts = {ReplicaState(st).value: int(n) for st, n in reps}
        return node_counts, replica_counts

    async def node_health(self) -> dict[str, float]:
        """Node name -> 1.0 when up, else 0.0."""
        async with readonly_session(self._sessions) as s:
            nodes = [n for n in await all_nodes(s) if n.kind is not NodeKind.EMBEDDED]
        return {n.name: 1.0 if n.state is NodeState.UP else 0.0 for n in nodes}

    async def embedded_only(self) -> bool:
        async with self._sessions() as s:
            return not remote_nodes([node_view(n) for n in await all_nodes(s)])
