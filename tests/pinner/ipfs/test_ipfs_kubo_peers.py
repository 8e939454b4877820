"""The Kubo RPC client against real js-ipfs peers: every call, a hand-made CAR, blocks between peers."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from pinner.car import read_car
from pinner.ipfs.errors import NodeError, NodeTimeoutError
from pinner.ipfs.http import HttpTimeouts
from pinner.ipfs.kubo import KuboClient, KuboConfig
from pinner.ipfs.protocol import IpfsNode, PinState
from pinner.unixfs import hashing
from pinner.unixfs.params import UnixfsParams

pytestmark = pytest.mark.ipfs


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


@pytest.fixture
async def clients(ipfs_peers: list[Any]) -> AsyncIterator[list[KuboClient]]:
    async with aiohttp.ClientSession() as session:
        yield [KuboClient(peer.api_url, session=session) for peer in ipfs_peers]


async def test_is_an_ipfs_node(clients: list[KuboClient]) -> None:
    assert isinstance(clients[0], IpfsNode)


async def test_info_reports_the_peer_identity_and_version(
    clients: list[KuboClient], ipfs_peers: list[Any]
) -> None:
    info = await clients[1].info()
    assert info.peer_id == ipfs_peers[1].peer_id
    assert info.version and info.version[0].isdigit()
    assert info.agent is not None and "ipfs" in info.agent
    assert any(str(ipfs_peers[1].ports.swarm) in addr for addr in info.addresses)


async def test_repo_stat_gives_numbers_and_free_space(clients: list[KuboClient]) -> None:
    stat = await clients[0].repo_stat()
    assert stat.repo_size > 0 and stat.storage_max > stat.repo_size
    assert stat.free_bytes == stat.storage_max - stat.repo_size
    free = await clients[0].free_space()  # the repo grows by itself (peer store), so not equal
    assert free is not None and 0 < free <= stat.storage_max


async def test_add_streams_a_file_and_matches_our_unixfs_cid(clients: list[KuboClient]) -> None:
    data = os.urandom(600_000)  # three chunks: a dag-pb root over raw leaves
    added = await clients[0].add(chunks_of(data, 65536), filename="weights.bin")
    ours, size = hashing.compute_cid(io.BytesIO(data), UnixfsParams(cid_version=1))
    assert added.cid == str(ours)
    assert added.cid.startswith("bafy")  # normalised from js-ipfs's base58btc
    assert size == len(data)
    assert await collect(clients[0].cat(added.cid)) == data
    assert await collect(clients[0].cat(added.cid, offset=10, length=5)) == data[10:15]
    assert await clients[0].is_pinned(added.cid)


async def test_car_import_pins_roots_and_exports_back(clients: list[KuboClient], small_dag: Any) -> None:
    node = clients[0]
    roots = await node.import_car(chunks_of(small_dag.car, 37))
    assert roots == [small_dag.root]
    assert await node.is_pinned(small_dag.root)
    assert (await node.pin_status(small_dag.root)).state is PinState.PINNED
    assert small_dag.root in [cid async for cid in node.list_pins()]
    assert await collect(node.cat(small_dag.root)) == small_dag.content
    exported = await collect(node.export_car(small_dag.root))
    car_roots, blocks = read_car(io.BytesIO(exported))
    assert [str(r.set(base="base32")) for r in car_roots] == [small_dag.root]
    assert {str(cid.set(base="base32")): data for cid, data in blocks} == small_dag.blocks


async def test_import_without_pinning_leaves_root_unpinned(clients: list[KuboClient], small_dag: Any) -> None:
    assert await clients[2].import_car(chunks_of(small_dag.car), pin_roots=False) == []  # as Kubo
    assert not await clients[2].is_pinned(small_dag.root)
    assert (await clients[2].stat_block(small_dag.root)).size == len(small_dag.blocks[small_dag.root])


async def test_unpin_removes_the_pin_and_is_idempotent(clients: list[KuboClient], small_dag: Any) -> None:
    node = clients[1]
    await node.import_car(chunks_of(small_dag.car))
    await node.unpin(small_dag.root)
    assert (await node.pin_status(small_dag.root)).state is PinState.UNPINNED
    assert small_dag.root not in [cid async for cid in node.list_pins()]
    await node.unpin(small_dag.root)


async def test_block_get_and_stat_are_verified(clients: list[KuboClient], small_dag: Any) -> None:
    await clients[0].import_car(chunks_of(small_dag.car))
    for cid, data in small_dag.blocks.items():
        assert await clients[0].get_block(cid) == data
        stat = await clients[0].stat_block(cid)
        assert (stat.cid, stat.size) == (cid, len(data))


async def test_two_peers_exchange_blocks_after_swarm_connect(
    clients: list[KuboClient], ipfs_peers: list[Any], small_dag: Any
) -> None:
    source, target = clients[0], clients[2]
    await source.import_car(chunks_of(small_dag.car))
    progress: list[int] = []
    status = await target.pin(
        small_dag.root, origins=(ipfs_peers[0].swarm_multiaddr,), on_progress=progress.append
    )
    assert status.state is PinState.PINNED and status.replicas == 1
    assert await target.is_pinned(small_dag.root)
    leaf = next(cid for cid in small_dag.blocks if cid != small_dag.root)
    assert await target.get_block(leaf) == small_dag.blocks[leaf]
    assert progress == sorted(progress)  # js-ipfs sends no progress lines; Kubo sends growing counts


async def test_raw_block_put_on_one_peer_is_fetched_by_another(clients: list[KuboClient]) -> None:
    data = os.urandom(1000)
    cid = await clients[1].put_block(data)
    assert cid.startswith("bafkrei")
    assert await clients[0].get_block(cid) == data


async def test_missing_block_fails_on_the_node_instead_of_hanging(ipfs_peers: list[Any]) -> None:
    missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # sha256 of b"nope"
    node = KuboClient(ipfs_peers[0].api_url, config=KuboConfig(node_timeout=0.5))
    async with node:
        with pytest.raises(NodeError) as err:
            await node.get_block(missing)
    assert err.value.cid == missing and err.value.node_url == ipfs_peers[0].api_url


async def test_client_timeout_is_typed_when_the_node_is_too_slow(ipfs_peers: list[Any]) -> None:
    missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    slow = KuboConfig(node_timeout=30, timeouts=HttpTimeouts(call=0.3, read=0.3))
    async with KuboClient(ipfs_peers[0].api_url, config=slow) as node:
        with pytest.raises(NodeTimeoutError) as err:
            await node.get_block(missing)
    assert err.value.code == "node_timeout"


async def test_swarm_connect_to_a_dead_address_is_a_node_error(clients: list[KuboClient]) -> None:
    with pytest.raises(NodeError) as err:
        await clients[0].swarm_connect(
            "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWQkdi98eE44dbqRSfNT1nY6Zv7ei2fKTrym7gH6zumpwL"
        )
    assert err.value.status == 500 and err.value.node_message


async def test_ipns_record_is_put_through_the_dht_fallback(
    clients: list[KuboClient], ipfs_peers: list[Any]
) -> None:
    from registry.ipns.name import ipns_name
    from registry.ipns.record import make_record
    from registry.trust.keys import generate_private_key, public_key_of

    key = generate_private_key()
    record = make_record(
        key,
        "/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        1,
        datetime.now(UTC) + timedelta(days=1),
        3_600_000_000_000,
    )
    name = ipns_name(public_key_of(key))
    await clients[0].put_ipns_record(name, record)
    # js-ipfs has no routing/get either: read the record back from its DHT event stream
    events = ipfs_peers[0].rpc("dht/get", arg=f"/ipns/{name}", expect_json=False).decode().splitlines()
    values = [base64.b64decode(json.loads(e)["Extra"]) for e in events if json.loads(e).get("Extra")]
    assert record in values
