"""Placement: targets capped by live nodes, free space and zones, never on draining or down nodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pinner.replication.model import NodeView, ReplicaView, Target
from pinner.replication.placement import effective_target, plan_unit
from pinner.states import NodeKind, NodeState, ReplicaState

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
T23 = Target(2, 3)


def nodes(n: int, **kw: object) -> list[NodeView]:
    return [NodeView(id=i, name=f"n{i}", free_space=1000 * (i + 1), **kw) for i in range(n)]  # type: ignore[arg-type]


def pinned(*ids: int, state: ReplicaState = ReplicaState.PINNED, attempts: int = 0) -> list[ReplicaView]:
    return [ReplicaView(CID, i, state, attempts) for i in ids]


def plan(ns: list[NodeView], reps: list[ReplicaView], target: Target = T23, **kw: object):
    return plan_unit(CID, 10, target, ns, reps, now=NOW, **kw)  # type: ignore[arg-type]


def test_no_node_configured_means_the_embedded_store_is_the_one_replica() -> None:
    p = plan([], [])
    assert p.target == Target(1, 1) and p.satisfied and p.add == ()
    embedded = [NodeView(id=9, name="local", kind=NodeKind.EMBEDDED)]
    assert plan(embedded, []).satisfied


def test_three_up_nodes_get_max_copies_most_free_space_first() -> None:
    p = plan(nodes(4), [])
    assert p.add == (3, 2, 1) and not p.satisfied and p.counted == 0


def test_target_is_capped_by_nodes_that_are_up() -> None:
    ns = nodes(1)
    assert effective_target(T23, ns, now=NOW) == Target(1, 1)
    p = plan(ns, pinned(0))
    assert p.satisfied and p.add == ()


def test_never_places_on_draining_or_down_nodes() -> None:
    ns = [
        NodeView(id=0, name="a", draining=True, free_space=10**9),
        NodeView(id=1, name="b", state=NodeState.DOWN, down_since=NOW, free_space=10**9),
        NodeView(id=2, name="c", free_space=5),
        NodeView(id=3, name="d", free_space=100),
        NodeView(id=4, name="e"),
    ]
    p = plan(ns, [])
    assert set(p.add) == {3, 4}  # c lacks room for 10 bytes; a drains; b is down


def test_zones_spread_copies_before_doubling_up() -> None:
    ns = [
        NodeView(id=0, name="a", free_space=900, tags={"zone": "z1"}),
        NodeView(id=1, name="b", free_space=800, tags={"zone": "z1"}),
        NodeView(id=2, name="c", free_space=100, tags={"zone": "z2"}),
        NodeView(id=3, name="d", free_space=50, tags={"zone": "z3"}),
    ]
    assert plan(ns, []).add == (0, 2, 3)
    assert plan(ns, [], Target(2, 4)).add == (0, 2, 3, 1)


def test_copies_beyond_max_are_removed_from_the_fullest_node() -> None:
    p = plan(nodes(4), pinned(0, 1, 2, 3))
    assert p.remove == (0,) and p.add == () and p.satisfied


def test_down_node_counts_within_grace_and_is_replaced_after() -> None:
    ns = nodes(4)
    ns[3] = NodeView(id=3, name="n3", state=NodeState.DOWN, down_since=NOW - timedelta(seconds=30))
    reps = pinned(1, 2, 3)
    within = plan(ns, reps, down_grace=timedelta(minutes=5))
    assert within.counted == 3 and within.add == ()
    after = plan(ns, reps, down_grace=timedelta(seconds=10))
    assert after.counted == 2 and after.satisfied and after.add == (0,)


def test_draining_node_loses_its_copy_once_the_target_is_met_elsewhere() -> None:
    ns = nodes(3)
    ns[2] = NodeView(id=2, name="n2", draining=True)
    short = plan(ns, pinned(1, 2))
    assert short.counted == 1 and short.add == (0,) and short.remove == ()
    met = plan(ns, pinned(0, 1, 2))
    assert met.remove == (2,)


def test_failed_replica_is_retried_on_its_node_then_moved_elsewhere() -> None:
    ns = nodes(3)
    retry = plan(ns, [*pinned(0, 1), *pinned(2, state=ReplicaState.FAILED, attempts=1)])
    assert retry.add == (2,)
    gave_up = plan(nodes(4), [*pinned(0, 1), *pinned(3, state=ReplicaState.FAILED, attempts=3)])
    assert gave_up.add == (2,)


def test_in_flight_replicas_are_driven_not_duplicated() -> None:
    p = plan(nodes(3), [*pinned(0), *pinned(1, state=ReplicaState.PINNING)])
    assert p.in_flight == (1,) and p.add == (1, 2)


def test_lost_copy_goes_to_a_fresh_node_before_its_old_node() -> None:
    p = plan(nodes(4), [*pinned(0, 1), *pinned(3, state=ReplicaState.LOST)])
    assert p.add == (2,)
    p = plan(nodes(3), [*pinned(0, 1), *pinned(2, state=ReplicaState.LOST)])
    assert p.add == (2,)
