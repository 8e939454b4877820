"""Audits: random blocks fetched from the node and re-hashed; a miss or a mismatch is a lost replica."""

from __future__ import annotations

import random

import pytest

from pinner.blockstore import FsBlockstore
from pinner.cids import normalize_cid
from pinner.ipfs.errors import NodeUnreachableError
from pinner.replication.audit import audit_replica, dag_block_cids, sample_blocks
from pinner.replication.mover import Mover
from pinner.testing.nodes import FakeKuboNode
from tests.pinner.replication.conftest import add_file


async def test_block_list_covers_the_dag_without_reading_raw_leaves(store: FsBlockstore) -> None:
    cid = add_file(store, 20_000)
    read: list[str] = []

    async def get(c: str) -> bytes:
        read.append(c)
        return store.get_block(c)

    blocks = await dag_block_cids(cid, get)
    expected = {normalize_cid(str(c)) for c, _ in store.iter_dag_blocks(cid)}
    assert set(blocks) == expected and len(blocks) == len(expected)
    assert len(read) < len(blocks) / 2  # only the interior nodes were read


def test_sample_is_distinct_and_bounded() -> None:
    items = [f"b{i}" for i in range(50)]
    picked = sample_blocks(items, 8, random.Random(1))
    assert len(set(picked)) == 8 and set(picked) <= set(items)
    assert sample_blocks(items[:3], 8, random.Random(1)) == items[:3]


async def _pushed(store: FsBlockstore) -> tuple[str, list[str], FakeKuboNode]:
    cid = add_file(store, 20_000)
    node = FakeKuboNode()
    await Mover(store).push(node, [cid])

    async def get(c: str) -> bytes:
        return store.get_block(c)

    return cid, await dag_block_cids(cid, get), node


async def test_healthy_replica_passes(store: FsBlockstore) -> None:
    cid, blocks, node = await _pushed(store)
    result = await audit_replica(node, cid, blocks, sample=5, rng=random.Random(2))
    assert result.ok and len(result.checked) == 5


async def test_missing_block_fails_the_audit(store: FsBlockstore) -> None:
    cid, blocks, node = await _pushed(store)
    del node.blocks[blocks[-1]]
    result = await audit_replica(node, cid, blocks, sample=len(blocks), rng=random.Random(3))
    assert not result.ok and result.bad_block == blocks[-1] and "not served" in (result.reason or "")


async def test_wrong_bytes_fail_the_audit(store: FsBlockstore) -> None:
    cid, blocks, node = await _pushed(store)
    node.serve_wrong = True
    result = await audit_replica(node, cid, blocks, sample=3, rng=random.Random(4))
    assert not result.ok and "wrong bytes" in (result.reason or "")
    assert len(result.checked) == 1  # the first bad block is enough


async def test_unreachable_node_is_not_a_verdict(store: FsBlockstore) -> None:
    cid, blocks, node = await _pushed(store)
    node.down = True
    with pytest.raises(NodeUnreachableError):
        await audit_replica(node, cid, blocks, sample=3, rng=random.Random(5))
