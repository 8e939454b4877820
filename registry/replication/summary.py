"""Pack-level replication facts from the index: the units of a pack, its target, and whether it is replicated.

`pack_replication` is the one answer to "is this pack replicated?" (pack-atomic: every unit at its
minimum), shared by the status API, the CLI and the curation rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from pinner.cids import normalize_cid
from pinner.replication.model import NodeView, ReplicaView, Target
from pinner.replication.placement import UnitPlan, alive, effective_target, plan_unit
from pinner.states import NodeKind, ReplicaState
from registry.db.base import utcnow
from registry.db.models import IpfsNode, Manifest, Model, Pack, Pointer, PointerChange, Replica, Shard


@dataclass(frozen=True)
class Unit:
    """One thing a pack needs on nodes: a shard file, or the manifest block itself."""

    cid: str  # normalised
    size: int
    kind: str  # "shard" | "file" | "manifest"
    name: str  # shard or file name, or "manifest"


@dataclass(frozen=True)
class UnitSummary:
    unit: Unit
    pinned: int
    target: Target
    replicas: dict[str, str] = field(default_factory=dict)  # node name -> replica state

    @property
    def satisfied(self) -> bool:
        return self.pinned >= self.target.min


@dataclass(frozen=True)
class ReplicationSummary:
    """Per unit pinned count and target; the pack is replicated only when every unit is satisfied."""

    pack_cid: str
    embedded_only: bool  # no IPFS node configured: the daemon's blockstore is the one replica
    units: tuple[UnitSummary, ...]
    nodes: tuple[str, ...] = ()

    @property
    def satisfied(self) -> bool:
        return all(u.satisfied for u in self.units)

    @property
    def min_pinned(self) -> int:
        return min((u.pinned for u in self.units), default=0)


def node_view(row: IpfsNode) -> NodeView:
    return NodeView(
        id=row.id,
        name=row.name,
        kind=row.kind,
        state=row.state,
        draining=row.draining,
        free_space=row.free_space,
        tags=dict(row.tags or {}),
        down_since=row.down_since,
    )


def replica_view(row: Replica) -> ReplicaView:
    return ReplicaView(cid=row.cid, node_id=row.node_id, state=row.state, attempts=row.attempts)


async def pack_units(session: AsyncSession, pack: Pack | Manifest) -> list[Unit]:
    shards = (
        await session.execute(select(Shard).where(Shard.pack_cid == pack.cid).order_by(Shard.position))
    ).scalars()
    return units_of(pack.cid, len(pack.manifest), shards)


def units_of(pack_cid: str, manifest_size: int, shards: Iterable[Shard]) -> list[Unit]:
    """The pack's units from its shard rows (files too) in position order, then the manifest block."""
    units = [Unit(normalize_cid(s.cid), s.size, s.role, s.filename) for s in shards]
    return [*units, Unit(normalize_cid(pack_cid), manifest_size, "manifest", "manifest")]


async def pack_target(session: AsyncSession, pack: Pack | Manifest, defaults: Target) -> Target:
    """The model's override where it sets one, else the settings' defaults.

    For content (a ``Manifest``) listed under several models: the largest of its listings' targets, so the
    copies satisfy every listing.
    """
    if isinstance(pack, Pack):
        model_ids = [pack.model_id]
    else:
        model_ids = list((await session.execute(select(Pack.model_id).where(Pack.cid == pack.cid))).scalars())
    models = [await session.get(Model, mid) for mid in model_ids]
    return combined_target(
        [(m.replication_min, m.replication_max) if m else (None, None) for m in models], defaults
    )


def combined_target(overrides: Sequence[tuple[int | None, int | None]], defaults: Target) -> Target:
    """The target of content listed by models with these ``(replication_min, replication_max)`` overrides
    (None or 0: the default): the largest of each, so the copies satisfy every listing."""
    lo, hi = defaults.min, defaults.max
    for i, (o_lo, o_hi) in enumerate(overrides):
        m_lo = o_lo if o_lo else defaults.min
        m_hi = o_hi if o_hi else defaults.max
        lo, hi = (m_lo, m_hi) if i == 0 else (max(lo, m_lo), max(hi, m_hi))
    return Target(lo, max(hi, lo))


async def all_nodes(session: AsyncSession) -> list[IpfsNode]:
    return list((await session.execute(select(IpfsNode).order_by(IpfsNode.id))).scalars())


async def replicas_for(session: AsyncSession, cids: Sequence[str]) -> list[Replica]:
    if not cids:
        return []
    return list((await session.execute(select(Replica).where(Replica.cid.in_(list(cids))))).scalars())


async def live_pack_cids(
    session: AsyncSession, retention: timedelta, now: datetime | None = None
) -> set[str]:
    """Packs GC must keep: pointed at now, named by pointer history within `retention`, or that young."""
    since = (now or utcnow()) - retention
    live = set((await session.execute(select(Pointer.pack_cid))).scalars())
    history = await session.execute(
        select(PointerChange.from_cid, PointerChange.to_cid).where(PointerChange.at >= since)
    )
    for from_cid, to_cid in history:
        live.update(c for c in (from_cid, to_cid) if c)
    live.update((await session.execute(select(Pack.cid).where(Pack.created_at >= since))).scalars())
    return live


async def is_live(
    session: AsyncSession, pack_cid: str, retention: timedelta, now: datetime | None = None
) -> bool:
    since = (now or utcnow()) - retention
    if (await session.execute(select(Pointer.id).where(Pointer.pack_cid == pack_cid).limit(1))).first():
        return True
    hit = await session.execute(
        select(PointerChange.id)
        .where(
            PointerChange.at >= since,
            or_(PointerChange.from_cid == pack_cid, PointerChange.to_cid == pack_cid),
        )
        .limit(1)
    )
    if hit.first():
        return True
    young = select(Pack.id).where(Pack.cid == pack_cid, Pack.created_at >= since).limit(1)
    return (await session.execute(young)).first() is not None


def plan_pack(
    units: Sequence[Unit],
    target: Target,
    nodes: Sequence[NodeView],
    replicas: Sequence[ReplicaView],
    *,
    now: datetime,
    down_grace: timedelta,
    max_failed_attempts: int = 3,
) -> list[UnitPlan]:
    return [
        plan_unit(
            u.cid,
            u.size,
            target,
            nodes,
            [r for r in replicas if r.cid == u.cid],
            now=now,
            down_grace=down_grace,
            max_failed_attempts=max_failed_attempts,
        )
        for u in units
    ]


def summarize(
    pack_cid: str,
    units: Sequence[Unit],
    target: Target,
    node_rows: Sequence[IpfsNode],
    states: Mapping[tuple[str, int], ReplicaState],
    *,
    now: datetime,
    down_grace: timedelta,
    nodes: Sequence[NodeView] | None = None,
) -> ReplicationSummary:
    """Per unit pinned count and (live-node-capped) target, from replica states by (unit CID, node id).

    `node_rows` are the remote nodes; `nodes` their views when the caller knows more than the rows say
    (a replicate job that saw a node go down). A pinned replica counts when its node is alive.
    """
    views = list(nodes) if nodes is not None else [node_view(n) for n in node_rows]
    names = {n.id: n.name for n in node_rows}
    eff = effective_target(target, views, now=now, down_grace=down_grace)
    counting = {n.id for n in views if alive(n, down_grace, now)}
    out = []
    for unit in units:
        mine = {nid: st for (cid, nid), st in states.items() if cid == unit.cid and nid in names}
        pinned = sum(1 for nid, st in mine.items() if st is ReplicaState.PINNED and nid in counting)
        replicas = {names[nid]: st.value for nid, st in mine.items()}
        out.append(UnitSummary(unit, pinned if names else 1, eff, replicas))
    return ReplicationSummary(
        pack_cid=pack_cid,
        embedded_only=not names,
        units=tuple(out),
        nodes=tuple(n.name for n in node_rows),
    )


async def pack_replication(
    session: AsyncSession,
    pack_cid: str,
    *,
    defaults: Target = Target(2, 3),
    down_grace: timedelta = timedelta(seconds=600),
    now: datetime | None = None,
) -> ReplicationSummary:
    """Per unit pinned count and (live-node-capped) target; `satisfied` only when every unit meets its min.

    Raises:
        LookupError: no pack with that CID.
    """
    pack = await session.get(Manifest, pack_cid)  # the content: whichever models list it
    if pack is None:
        raise LookupError(f"no pack {pack_cid}")
    units = await pack_units(session, pack)
    target = await pack_target(session, pack, defaults)
    node_rows = [n for n in await all_nodes(session) if n.kind is not NodeKind.EMBEDDED]
    rows = await replicas_for(session, [u.cid for u in units])
    states = {(r.cid, r.node_id): r.state for r in rows}
    return summarize(pack.cid, units, target, node_rows, states, now=now or utcnow(), down_grace=down_grace)
