"""Replica and node states: the vocabulary the replication service and the index share."""

from __future__ import annotations

import enum


class ReplicaState(enum.StrEnum):
    """State of one piece of content (a shard or a manifest block) on one IPFS node."""

    QUEUED = "queued"
    PINNING = "pinning"
    PINNED = "pinned"
    FAILED = "failed"
    UNPINNING = "unpinning"
    LOST = "lost"


class NodeKind(enum.StrEnum):
    """Every kind of node the index knows (the ``node_kind`` CHECK of ``ipfs_nodes`` lists the same)."""

    KUBO = "kubo"  # Kubo RPC /api/v0
    CLUSTER = "cluster"  # IPFS Cluster REST API
    PINNING_SERVICE = "pinning-service"  # Pinning Service API v1
    EMBEDDED = "embedded"  # the daemon's own blockstore


# The kinds a node may be registered as (API validation, CLI choices, error messages): the embedded
# blockstore is always there and is never added.
ADDABLE_NODE_KINDS: tuple[str, ...] = tuple(k.value for k in NodeKind if k is not NodeKind.EMBEDDED)


class NodeState(enum.StrEnum):
    UP = "up"
    DOWN = "down"
    DRAINING = "draining"
    UNKNOWN = "unknown"
