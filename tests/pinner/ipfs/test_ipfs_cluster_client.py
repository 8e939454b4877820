"""IPFS Cluster client contract tests against an in-test server that follows the Cluster REST API."""

from __future__ import annotations

from typing import Any

import pytest

from pinner.content_errors import InvalidCid
from pinner.ipfs.cluster import ClusterClient, ClusterConfig, aggregate
from pinner.ipfs.errors import NodeError, PinFailedError, PinStalledError
from pinner.ipfs.http import HttpTimeouts
from pinner.ipfs.protocol import PinBackend, PinState
from pinner.testing.orchestrators import FakeCluster

CID_V0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
CID_V1 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
FAST: dict[str, Any] = dict(
    timeouts=HttpTimeouts(call=2, read=2), poll_interval=0.01, pin_no_progress_timeout=0.3
)


@pytest.fixture
async def cluster(aiohttp_server: Any) -> Any:
    fake = FakeCluster()
    server = await aiohttp_server(fake.app())
    clients: list[ClusterClient] = []

    def connect(**config: Any) -> ClusterClient:
        client = ClusterClient(str(server.make_url("/")), config=ClusterConfig(**{**FAST, **config}))
        clients.append(client)
        return client

    yield fake, connect
    for client in clients:
        await client.close()


async def test_is_a_pin_backend(cluster: Any) -> None:
    _, connect = cluster
    assert isinstance(connect(), PinBackend)


async def test_pin_asks_for_the_replication_factor_and_waits_for_it(cluster: Any) -> None:
    fake, connect = cluster
    client = connect(replication_min=2, replication_max=2)
    seen: list[int] = []
    status = await client.pin(
        CID_V1, name="shard-0", origins=("/ip4/127.0.0.1/tcp/1/p2p/x",), on_progress=seen.append
    )
    assert fake.requests[0] == (
        "POST",
        CID_V1,
        {
            "replication-min": "2",
            "replication-max": "2",
            "name": "shard-0",
            "origins": "/ip4/127.0.0.1/tcp/1/p2p/x",
        },
    )
    assert status.state is PinState.PINNED and status.replicas == 2
    assert set(status.peers) == {"12D3KooWpeerA", "12D3KooWpeerB"}  # the "remote" peer is left out
    assert seen[-1] == 2


async def test_status_list_and_unpin(cluster: Any) -> None:
    _, connect = cluster
    client = connect()
    assert (await client.pin_status(CID_V0)).state is PinState.UNPINNED
    await client.pin(CID_V0)
    assert (await client.pin_status(CID_V0)).replicas == 3
    assert [cid async for cid in client.list_pins()] == [CID_V0]
    await client.unpin(CID_V0)
    assert (await client.pin_status(CID_V0)).state is PinState.UNPINNED
    await client.unpin(CID_V0)  # already gone: still fine


async def test_a_peer_error_fails_the_pin_with_its_reason(cluster: Any) -> None:
    fake, connect = cluster
    fake.fail_peer = "12D3KooWpeerB"
    with pytest.raises(PinFailedError) as err:
        await connect().pin(CID_V1)
    assert "context deadline exceeded" in str(err.value.node_message)


async def test_a_pin_stuck_in_the_queue_stalls(cluster: Any) -> None:
    fake, connect = cluster
    fake.stuck = True
    with pytest.raises(PinStalledError):
        await connect().pin(CID_V1)


async def test_info_and_peers(cluster: Any) -> None:
    _, connect = cluster
    client = connect()
    info = await client.info()
    assert info.peer_id == "12D3KooWpeerA" and info.version == "1.1.2"
    assert info.addresses == ("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWpeerAipfs",)
    assert [p.peer_id for p in await client.peers()] == ["12D3KooWpeerA", "12D3KooWpeerB", "12D3KooWpeerC"]
    assert await client.free_space() is None


async def test_cluster_errors_are_typed(cluster: Any) -> None:
    _, connect = cluster
    with pytest.raises(InvalidCid):
        await connect().pin("not-a-cid")
    client = connect()
    with pytest.raises(NodeError) as err:
        await client._json("POST", "/pins/zzz", cid="zzz")  # the server's own 400 path
    assert err.value.status == 400 and "error decoding Cid" in str(err.value.node_message)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ({"a": "pinned", "b": "pinned", "c": "remote"}, PinState.PINNED),
        ({"a": "pinned", "b": "pinning"}, PinState.PINNING),
        ({"a": "pin_queued", "b": "pin_queued"}, PinState.QUEUED),
        ({"a": "pinned", "b": "pin_error"}, PinState.FAILED),
        ({"a": "pinned", "b": "unexpectedly_unpinned"}, PinState.FAILED),
        ({"a": "pinned", "b": "something new"}, PinState.FAILED),
        ({"a": "unpinned", "b": "unpinned"}, PinState.UNPINNED),
        ({"a": "remote"}, PinState.UNPINNED),
    ],
)
def test_status_aggregation(statuses: dict[str, str], expected: PinState) -> None:
    status = aggregate(CID_V1, {peer: {"status": s, "error": ""} for peer, s in statuses.items()})
    assert status.state is expected
    assert status.replicas == sum(s == "pinned" for s in statuses.values())
