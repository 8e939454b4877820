"""One contract for every `IpfsNode`: a real js-ipfs peer through `KuboClient`, and the in-memory fakes of
`pinner.testing.nodes` that the mover, audit and replication tests stand in for it.

These are the block-level behaviours the mover and the audit rely on; the pin behaviours are in
test_ipfs_pin_backend_contract.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pinner.ipfs.kubo import KuboClient
from pinner.ipfs.protocol import IpfsNode, PinState
from pinner.testing.nodes import FakeAddingNode, FakeKuboNode


async def chunks_of(data: bytes, size: int = 37) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture(params=[pytest.param("kubo", marks=pytest.mark.ipfs), "fake_kubo", "fake_adding_node"])
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IpfsNode]:
    if request.param == "fake_kubo":
        yield FakeKuboNode()
    elif request.param == "fake_adding_node":
        yield FakeAddingNode(tmp_path / "node")
    else:
        peers = request.getfixturevalue("ipfs_peers")
        async with aiohttp.ClientSession() as session:
            yield KuboClient(peers[0].api_url, session=session)


@pytest.fixture
def dag(request: pytest.FixtureRequest, dag_factory: Callable[[bytes], Any]) -> Any:
    return dag_factory(request.node.nodeid.encode())


async def test_is_an_ipfs_node(node: IpfsNode) -> None:
    assert isinstance(node, IpfsNode)


async def test_car_import_pins_and_returns_its_roots(node: IpfsNode, dag: Any) -> None:
    assert await node.import_car(chunks_of(dag.car)) == [dag.root]
    assert (await node.pin_status(dag.root)).state is PinState.PINNED
    assert dag.root in [cid async for cid in node.list_pins()]


async def test_import_without_pinning_returns_no_roots_and_pins_nothing(node: IpfsNode, dag: Any) -> None:
    assert await node.import_car(chunks_of(dag.car), pin_roots=False) == []
    assert (await node.pin_status(dag.root)).state is PinState.UNPINNED
    assert (await node.stat_block(dag.root)).size == len(dag.blocks[dag.root])


async def test_imported_blocks_come_back_with_their_sizes(node: IpfsNode, dag: Any) -> None:
    await node.import_car(chunks_of(dag.car))
    for cid, data in dag.blocks.items():
        assert await node.get_block(cid) == data
        stat = await node.stat_block(cid)
        assert (stat.cid, stat.size) == (cid, len(data))


async def test_all_pinned_asks_for_several_at_once(
    node: IpfsNode, dag_factory: Callable[[bytes], Any]
) -> None:
    one, two, never = (dag_factory(b"all-pinned-%d" % i) for i in range(3))
    for d in (one, two):
        assert await node.import_car(chunks_of(d.car)) == [d.root]
    assert await node.all_pinned([one.root, two.root]) is True
    assert await node.all_pinned([one.root]) is True
    assert await node.all_pinned([]) is True
    await node.import_car(chunks_of(never.car), pin_roots=False)  # its blocks are there, it is not pinned
    assert await node.all_pinned([one.root, never.root, two.root]) is False
    assert await node.all_pinned([never.root]) is False
