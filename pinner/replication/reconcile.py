"""Reconcile: what a node really pins against what the index believes, as a diff the service records.

Pins the node holds that the index does not know are left alone (a node may be shared with others);
only our own replicas are judged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pinner.cids import normalize_cid
from pinner.ipfs.protocol import PinBackend


@dataclass(frozen=True)
class PinDrift:
    """`missing`: indexed as pinned but the node does not pin it (unexpectedly unpinned).
    `completed`: indexed as still in flight but the node already pins it (a push that finished unseen)."""

    missing: frozenset[str]
    completed: frozenset[str]
    confirmed: frozenset[str]

    @property
    def clean(self) -> bool:
        return not self.missing and not self.completed


def diff_pins(pinned: Iterable[str], in_flight: Iterable[str], actual: Iterable[str]) -> PinDrift:
    """Compare index rows (`pinned`, `in_flight` CIDs) with the node's pinset `actual` (any CID spelling)."""
    have = {normalize_cid(c) for c in actual}
    want = {normalize_cid(c) for c in pinned}
    flying = {normalize_cid(c) for c in in_flight}
    return PinDrift(
        missing=frozenset(want - have),
        completed=frozenset(flying & have),
        confirmed=frozenset(want & have),
    )


async def node_pinset(node: PinBackend) -> set[str]:
    """Every CID the node pins recursively, normalised (streamed from the node, collected here)."""
    return {normalize_cid(c) async for c in node.list_pins()}
