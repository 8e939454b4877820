"""Reconcile diff: unexpectedly unpinned replicas, pushes that completed unseen, foreign pins ignored."""

from __future__ import annotations

from multiformats import CID

from pinner.replication.reconcile import diff_pins, node_pinset
from pinner.testing.nodes import FakeKuboNode

A = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
B = "bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq"
C = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_diff_finds_missing_and_completed_and_ignores_foreign_pins() -> None:
    b58 = str(CID.decode(B).set(base="base58btc"))  # js-ipfs spelling of the same CID
    drift = diff_pins(
        pinned=[A, B], in_flight=[C], actual=[b58, C, "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"]
    )
    assert drift.missing == {A} and drift.completed == {C} and drift.confirmed == {B}
    assert not drift.clean


def test_clean_when_the_node_agrees() -> None:
    assert diff_pins([A], [], [A]).clean


async def test_node_pinset_normalises() -> None:
    node = FakeKuboNode()
    node.pins = {str(CID.decode(A).set(base="base58btc"))}
    assert await node_pinset(node) == {A}
