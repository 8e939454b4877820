"""The mover: CAR into dag/import from our blocks, pin from origins otherwise, confirmed, idempotent, limited."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

from pinner.blockstore import FsBlockstore
from pinner.cids import cid_str, normalize_cid
from pinner.ipfs.errors import NodeTimeoutError, NotPinnedError
from pinner.replication.mover import Mover, MoverConfig
from pinner.testing.nodes import FakeAddingNode, FakeKuboNode, FakeOrchestrator
from pinner.unixfs.params import UnixfsParams
from tests.pinner.replication.conftest import add_file


async def test_push_sends_every_block_as_one_car_and_the_node_pins_each_root(store: FsBlockstore) -> None:
    cids = [add_file(store, 9000), add_file(store, 3000)]
    node = FakeKuboNode()
    result = await Mover(store).push(node, cids)
    assert result.method == "car" and result.bytes_moved > 12000
    assert node.pins == {normalize_cid(c) for c in cids} and node.imports == 1
    assert node.pin_checks == 1  # confirmed with one pin/ls for both roots, not one call each
    for cid in cids:
        for block_cid, data in store.iter_dag_blocks(cid):
            assert node.blocks[normalize_cid(str(block_cid))] == data


async def test_push_again_is_confirmed_without_sending(store: FsBlockstore) -> None:
    cid = add_file(store, 5000)
    node = FakeKuboNode()
    mover = Mover(store)
    await mover.push(node, [cid])
    again = await mover.push(node, [cid])
    assert again.method == "already" and again.bytes_moved == 0 and node.imports == 1


async def test_node_that_does_not_pin_after_import_is_an_error(store: FsBlockstore) -> None:
    cid = add_file(store, 2000)
    node = FakeKuboNode()
    node.forget_pins = True
    with pytest.raises(NotPinnedError) as exc:
        await Mover(store).push(node, [cid])
    assert exc.value.cid == normalize_cid(cid) and exc.value.node_url == node.url


async def test_bytes_only_on_another_node_are_pinned_from_that_origin(store: FsBlockstore) -> None:
    cid = add_file(store, 4000)
    holder = FakeKuboNode("http://127.0.0.1:3")
    await Mover(store).push(holder, [cid])
    store.delete_file(cid)
    target = FakeKuboNode("http://127.0.0.1:4")
    target.peers["/holder"] = holder
    result = await Mover(store).push(target, [cid], origins=("/holder",))
    assert result.method == "pin" and target.pin_calls == [(normalize_cid(cid), ("/holder",))]
    assert normalize_cid(cid) in target.pins


async def test_pin_without_a_reachable_origin_fails_typed(store: FsBlockstore) -> None:
    cid = add_file(store, 4000)
    store.delete_file(cid)
    with pytest.raises(NodeTimeoutError):
        await Mover(store).push(FakeKuboNode(), [cid])


async def test_orchestrator_is_asked_to_pin_with_origins(store: FsBlockstore) -> None:
    cid = add_file(store, 4000)
    holder = FakeKuboNode("http://127.0.0.1:3")
    await Mover(store).push(holder, [cid])
    cluster = FakeOrchestrator()
    cluster.peers["/holder"] = holder
    result = await Mover(store).push(cluster, [cid], origins=("/holder",))
    assert result.method == "pin" and cluster.pins == {normalize_cid(cid)}


async def test_per_node_concurrency_is_respected(store: FsBlockstore) -> None:
    cids = [add_file(store, 3000) for _ in range(6)]
    node = FakeKuboNode()
    mover = Mover(store, MoverConfig(per_node_concurrency=2, car_batch_bytes=512))
    await asyncio.gather(*(mover.push(node, [c]) for c in cids))
    assert node.max_active <= 2 and node.pins == {normalize_cid(c) for c in cids}


async def test_files_the_node_rebuilds_exactly_are_added_not_imported(
    store: FsBlockstore, tmp_path: Path
) -> None:
    kubo_like = UnixfsParams(chunk_size=1024, cid_version=1, raw_leaves=True)  # 174 links, as `add` builds
    cids = [cid_str(store.ingest_file(io.BytesIO(os.urandom(n)), kubo_like).cid) for n in (9000, 700)]
    node = FakeAddingNode(tmp_path / "node")
    result = await Mover(store, MoverConfig(add_min_bytes=0)).push(node, cids)
    assert result.method == "add" and node.imports == 0 and result.bytes_moved == 9700
    assert [pin for _, pin in node.adds] == [False, False]  # pinned only once the CID matched
    assert node.pins == {normalize_cid(c) for c in cids}
    for cid in cids:
        for block_cid, data in store.iter_dag_blocks(cid):
            assert node.blocks[normalize_cid(str(block_cid))] == data


async def test_a_node_that_builds_another_dag_gets_the_car_and_pins_nothing_else(
    store: FsBlockstore, tmp_path: Path
) -> None:
    kubo_like = UnixfsParams(chunk_size=1024, cid_version=1, raw_leaves=True)
    cid = cid_str(store.ingest_file(io.BytesIO(os.urandom(9000)), kubo_like).cid)
    node = FakeAddingNode(tmp_path / "node", chunk_override=2048)
    result = await Mover(store, MoverConfig(add_min_bytes=0)).push(node, [cid])
    assert result.method == "car" and node.imports == 1 and len(node.adds) == 1
    assert node.pins == {normalize_cid(cid)}  # the other DAG's root was never pinned
    narrow = add_file(store, 9000)  # 4 links per node: `add` cannot rebuild that shape
    node = FakeAddingNode(tmp_path / "node2")
    pushed = await Mover(store, MoverConfig(add_min_bytes=0)).push(node, [narrow])
    assert pushed.method == "car" and node.pins == {normalize_cid(narrow)}


async def test_cidv0_dags_always_go_as_car(store: FsBlockstore, tmp_path: Path) -> None:
    cid = cid_str(store.ingest_file(io.BytesIO(os.urandom(5000)), UnixfsParams(chunk_size=1024)).cid)
    node = FakeAddingNode(tmp_path / "node")
    result = await Mover(store, MoverConfig(add_min_bytes=0)).push(node, [cid])
    assert result.method == "car" and node.adds == [] and node.pins == {cid}


async def test_small_files_and_add_switched_off_go_in_the_car(store: FsBlockstore, tmp_path: Path) -> None:
    kubo_like = UnixfsParams(chunk_size=1024, cid_version=1, raw_leaves=True)
    cid = cid_str(store.ingest_file(io.BytesIO(os.urandom(9000)), kubo_like).cid)
    node = FakeAddingNode(tmp_path / "node")
    assert (await Mover(store, MoverConfig(add_min_bytes=10_000)).push(node, [cid])).method == "car"
    other = FakeAddingNode(tmp_path / "other")
    assert (
        await Mover(store, MoverConfig(prefer_add=False, add_min_bytes=0)).push(other, [cid])
    ).method == "car"
    assert node.adds == other.adds == []
