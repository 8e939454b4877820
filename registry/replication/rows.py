"""What the replication service's parts share: config, counters, the enqueue seam and replica-row writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.ipfs.errors import NodeError
from pinner.ipfs.protocol import PinBackend
from pinner.replication.model import Target
from pinner.states import ReplicaState
from registry.db.base import utcnow
from registry.db.engine import write_session
from registry.db.models import Replica


@dataclass(frozen=True)
class ReplicationConfig:
    target: Target = field(default_factory=lambda: Target(2, 3))
    down_grace_s: float = 600.0
    audit_sample_blocks: int = 8
    audit_batch: int = 64  # replicas audited per audit job
    gc_retention_s: float = 7 * 24 * 3600.0
    max_failed_attempts: int = 3  # per (unit, node) before placement prefers another node

    @property
    def down_grace(self) -> timedelta:
        return timedelta(seconds=self.down_grace_s)


class ReplicationCounters:
    """Process-local counters exported at /metrics (gauges there are read from the index on scrape)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.bytes_moved = Counter(
            "modelpack_replication_bytes_moved", "CAR bytes pushed to nodes", ["node"], registry=self.registry
        )
        self.audits = Counter(
            "modelpack_replication_audits",
            "Replica audits by result",
            ["node", "result"],
            registry=self.registry,
        )
        self.pushes = Counter(
            "modelpack_replication_pushes",
            "Pushes to nodes by result",
            ["node", "result"],
            registry=self.registry,
        )


async def set_rows(
    sessions: async_sessionmaker[AsyncSession], node_id: int, cids: Sequence[str], **values: Any
) -> None:
    async with write_session(sessions) as s:
        await s.execute(
            update(Replica).where(Replica.node_id == node_id, Replica.cid.in_(list(cids))).values(**values)
        )


async def unpin_units(
    sessions: async_sessionmaker[AsyncSession], backend: PinBackend, node_id: int, cids: list[str]
) -> list[str]:
    """Unpin each CID from the node and drop its rows; a failed unpin stays `unpinning` with the reason."""
    await set_rows(sessions, node_id, cids, state=ReplicaState.UNPINNING)
    done = []
    for cid in cids:
        try:
            await backend.unpin(cid)
        except NodeError as exc:
            await set_rows(sessions, node_id, [cid], last_error=f"unpin failed: {exc.message}"[:2000])
            continue
        done.append(cid)
    if done:
        async with sessions() as s, s.begin():
            await s.execute(delete(Replica).where(Replica.node_id == node_id, Replica.cid.in_(done)))
    return done


async def mark_queued(sessions: async_sessionmaker[AsyncSession], adds: dict[int, list[str]]) -> None:
    """One row per (unit, node) to place, in `queued` (a retried or lost one is queued again), in one transaction."""
    wanted = {(cid, nid) for nid, cids in adds.items() for cid in cids}
    if not wanted:
        return
    for attempt in range(2):  # a concurrent job for another pack sharing a unit may insert one first
        try:
            async with write_session(sessions) as s:
                rows = (
                    await s.execute(
                        select(Replica).where(
                            Replica.cid.in_(sorted({c for c, _ in wanted})),
                            Replica.node_id.in_(sorted({n for _, n in wanted})),
                        )
                    )
                ).scalars()
                have = {(r.cid, r.node_id): r for r in rows}
                for cid, nid in sorted(wanted):
                    row = have.get((cid, nid))
                    if row is None:
                        s.add(Replica(cid=cid, node_id=nid, state=ReplicaState.QUEUED, attempts=0))
                    elif row.state in (ReplicaState.FAILED, ReplicaState.LOST):
                        row.state = ReplicaState.QUEUED
            return
        except IntegrityError:
            if attempt:
                raise


async def record_pinned(
    sessions: async_sessionmaker[AsyncSession], placed: Sequence[tuple[int, str, int]]
) -> None:
    """Rows of units just pinned, (node id, unit, bytes moved) each, as `pinned`, in one transaction."""
    if not placed:
        return
    now = utcnow()
    async with write_session(sessions) as s:
        for node_id, cid, share in placed:
            await s.execute(
                update(Replica)
                .where(Replica.node_id == node_id, Replica.cid == cid)
                .values(
                    state=ReplicaState.PINNED,
                    last_error=None,
                    pinned_at=now,
                    bytes_moved=Replica.bytes_moved + share,
                )
            )
