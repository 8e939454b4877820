"""The values placement reasons about: what we know of a node, of one replica, and the pack's target."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pinner.states import NodeKind, NodeState, ReplicaState

ZONE_TAG = "zone"

# A replica in one of these states occupies its node for that CID: placement never adds a second one there.
ASSIGNED = frozenset({ReplicaState.QUEUED, ReplicaState.PINNING, ReplicaState.PINNED, ReplicaState.FAILED})


@dataclass(frozen=True)
class Target:
    """How many copies a unit wants: at least `min` for the pack to count as replicated, up to `max`."""

    min: int
    max: int

    def __post_init__(self) -> None:
        if self.min < 1 or self.max < self.min:
            raise ValueError(f"replication target needs 1 <= min <= max, got min={self.min} max={self.max}")


@dataclass(frozen=True)
class NodeView:
    """One registered node as placement sees it (a row of `ipfs_nodes`, or a test's fake)."""

    id: int
    name: str
    kind: NodeKind = NodeKind.KUBO
    state: NodeState = NodeState.UP
    draining: bool = False
    free_space: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    down_since: datetime | None = None

    @property
    def zone(self) -> str | None:
        return self.tags.get(ZONE_TAG)

    @property
    def usable(self) -> bool:
        """May receive new replicas: reachable and not being emptied."""
        return self.state is NodeState.UP and not self.draining

    def down_longer_than(self, grace: timedelta, now: datetime) -> bool:
        if self.state is not NodeState.DOWN:
            return False
        return self.down_since is None or now - self.down_since >= grace


@dataclass(frozen=True)
class ReplicaView:
    """One (cid, node) replica row."""

    cid: str
    node_id: int
    state: ReplicaState
    attempts: int = 0
