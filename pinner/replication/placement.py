"""Placement: which nodes should hold one unit (a shard or a manifest), from node facts and current replicas.

Rules (issue #7): aim for `max` copies, count a unit satisfied at `min`, both capped by the nodes that
are up; never place on a draining or down node; spread by free space; with zones, no two copies in one
zone while an unused zone is available; copies beyond `max` (or on draining nodes, once the target is
met elsewhere) are removed. A replica on a node that has been down longer than the grace period does
not count, which is what triggers re-placement when a node dies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pinner.replication.model import NodeView, ReplicaView, Target
from pinner.states import NodeKind, NodeState, ReplicaState


@dataclass(frozen=True)
class UnitPlan:
    """What to do for one unit: nodes to add a replica on, nodes to remove it from, and the verdict now."""

    cid: str
    target: Target
    counted: int  # replicas that count now (pinned, on a node not written off)
    add: tuple[int, ...] = ()
    remove: tuple[int, ...] = ()
    in_flight: tuple[int, ...] = field(default=())  # queued/pinning replicas to drive to completion

    @property
    def satisfied(self) -> bool:
        return self.counted >= self.target.min


def remote_nodes(nodes: Iterable[NodeView]) -> list[NodeView]:
    return [n for n in nodes if n.kind is not NodeKind.EMBEDDED]


def alive(node: NodeView, grace: timedelta, now: datetime) -> bool:
    """Can keep a copy that counts: not draining, and up or down for less than the grace period."""
    return not node.draining and not node.down_longer_than(grace, now)


def effective_target(
    target: Target, nodes: Sequence[NodeView], *, now: datetime, down_grace: timedelta = timedelta(0)
) -> Target:
    """The target capped by the nodes that can hold a copy; 1 when no node is configured (embedded)."""
    remote = remote_nodes(nodes)
    if not remote:
        return Target(1, 1)
    cap = max(sum(1 for n in remote if alive(n, down_grace, now)), 1)
    return Target(min(target.min, cap), min(target.max, cap))


def _counts(replica: ReplicaView, node: NodeView | None, grace: timedelta, now: datetime) -> bool:
    return replica.state is ReplicaState.PINNED and node is not None and alive(node, grace, now)


def _rank(node: NodeView, penalty: int) -> tuple[int, int, int, str]:
    # Fewer failures first, then the most free space (unknown space ranks after known), then a stable name.
    space = node.free_space if node.free_space is not None else -1
    return (penalty, 0 if node.free_space is not None else 1, -space, node.name)


def plan_unit(
    cid: str,
    size: int,
    target: Target,
    nodes: Sequence[NodeView],
    replicas: Sequence[ReplicaView],
    *,
    now: datetime,
    down_grace: timedelta = timedelta(0),
    max_failed_attempts: int = 3,
) -> UnitPlan:
    """Plan one unit. `replicas` are this unit's rows; `nodes` every registered node."""
    remote = remote_nodes(nodes)
    eff = effective_target(target, nodes, now=now, down_grace=down_grace)
    if not remote:
        return UnitPlan(cid, eff, counted=1)  # the embedded blockstore is the one replica
    by_id = {n.id: n for n in remote}
    mine = {r.node_id: r for r in replicas if r.cid == cid and r.node_id in by_id}
    counted = [r for r in mine.values() if _counts(r, by_id.get(r.node_id), down_grace, now)]
    in_flight = [
        r.node_id
        for r in mine.values()
        if r.state in (ReplicaState.QUEUED, ReplicaState.PINNING) and by_id[r.node_id].usable
    ]
    # Replicas still worth a retry on a usable node count as assigned: no extra node is picked for them.
    retrying = [
        r.node_id
        for r in mine.values()
        if r.state is ReplicaState.FAILED and by_id[r.node_id].usable and r.attempts < max_failed_attempts
    ]
    retrying = retrying[: max(eff.max - len(counted) - len(in_flight), 0)]
    have = len(counted) + len(in_flight) + len(retrying)
    add: list[int] = [*in_flight, *retrying]
    if have < eff.max:
        zones_used = {by_id[r.node_id].zone for r in counted} | {by_id[i].zone for i in add}
        zones_used.discard(None)
        # Nodes without a row first; a node that lost the unit or failed it too often is a last resort.
        penalty: dict[int, int] = {}
        for n in remote:
            row = mine.get(n.id)
            if not n.usable or (n.free_space is not None and n.free_space < size):
                continue
            if row is None:
                penalty[n.id] = 0
            elif row.state is ReplicaState.LOST or (
                row.state is ReplicaState.FAILED and row.attempts >= max_failed_attempts
            ):
                penalty[n.id] = 1 + row.attempts
        ordered = sorted((by_id[i] for i in penalty), key=lambda n: _rank(n, penalty[n.id]))
        for node in _spread(ordered, zones_used, eff.max - have):
            add.append(node.id)
    remove = _excess(mine, counted, by_id, eff)
    return UnitPlan(
        cid, eff, counted=len(counted), add=tuple(add), remove=tuple(remove), in_flight=tuple(in_flight)
    )


def _spread(ordered: list[NodeView], zones_used: set[str | None], want: int) -> list[NodeView]:
    """Take `want` nodes in rank order, preferring ones in a zone not used yet."""
    picked: list[NodeView] = []
    used = set(zones_used)
    rest: list[NodeView] = []
    for node in ordered:
        if len(picked) == want:
            break
        if node.zone is not None and node.zone in used:
            rest.append(node)
            continue
        picked.append(node)
        if node.zone is not None:
            used.add(node.zone)
    for node in rest:  # every zone is taken: doubling up beats missing the target
        if len(picked) == want:
            break
        picked.append(node)
    return picked


def _excess(
    mine: dict[int, ReplicaView], counted: list[ReplicaView], by_id: dict[int, NodeView], eff: Target
) -> list[int]:
    """Copies to remove: on draining nodes once the target is met elsewhere, and any beyond `max`."""
    remove: list[int] = []
    if len(counted) >= eff.min:
        remove += [
            nid
            for nid, r in mine.items()
            if by_id[nid].draining
            and r.state is not ReplicaState.UNPINNING
            and by_id[nid].state is NodeState.UP
        ]
    surplus = len(counted) - eff.max
    if surplus > 0:
        # Only an up node can be asked to unpin; drop from the ones with the least free space first.
        up = [r for r in counted if by_id[r.node_id].state is NodeState.UP]
        keep_order = sorted(up, key=lambda r: _rank(by_id[r.node_id], 0))
        remove += [r.node_id for r in reversed(keep_order)][:surplus]
    return remove
