"""The js-ipfs peer fixture itself: start, crash, restart with or without its repo, never an orphan."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pinner.ipfs.errors import NodeUnreachableError
from pinner.ipfs.kubo import KuboClient
from tests.ipfs_testnode import peers as peers_module
from tests.ipfs_testnode import plugin


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.ipfs
def test_session_peers_are_distinct_and_connected(ipfs_peers: list[Any]) -> None:
    assert len(ipfs_peers) == 3
    ports = [p for peer in ipfs_peers for p in vars(peer.ports).values()]
    assert len(set(ports)) == len(ports)
    assert len({peer.peer_id for peer in ipfs_peers}) == 3
    connected = {p["Peer"] for p in ipfs_peers[0].rpc("swarm/peers")["Peers"]}
    assert {ipfs_peers[1].peer_id, ipfs_peers[2].peer_id} <= connected
    for peer in ipfs_peers:
        assert peer.rpc("bootstrap/list")["Peers"] == []
        assert peer.api_url.startswith("http://127.0.0.1:") and peer.gateway_url.startswith(
            "http://127.0.0.1:"
        )


@pytest.mark.ipfs
@pytest.mark.slow
async def test_kill_restart_and_wipe(ipfs_peer_factory: Callable[[int], list[Any]], small_dag: Any) -> None:
    (peer,) = ipfs_peer_factory(1)
    first_id, first_pid = peer.peer_id, peer.pid
    async with KuboClient(peer.api_url) as node:
        await node.import_car(one(small_dag.car))
        peer.kill()
        assert not alive(first_pid)
        with pytest.raises(NodeUnreachableError):
            await node.version()

        peer.restart()  # keeps the repo: same identity, pins survive a crash
        assert peer.peer_id == first_id
        assert await node.is_pinned(small_dag.root)

        peer.restart(wipe=True)  # a fresh node on the same ports: new identity, nothing pinned
        assert peer.peer_id != first_id
        assert not await node.is_pinned(small_dag.root)
        assert [cid async for cid in node.list_pins()] == []

    pid = peer.pid
    peer.stop()
    assert not alive(pid) and not peer.running


@pytest.mark.ipfs
@pytest.mark.slow
async def test_a_killed_session_peer_is_restored_and_reconnected(ipfs_peers: list[Any]) -> None:
    victim = ipfs_peers[2]
    old_id = victim.peer_id
    try:
        victim.kill()
        async with KuboClient(victim.api_url) as node:
            with pytest.raises(NodeUnreachableError):
                await node.version()
    finally:
        peers_module.restore_peers(ipfs_peers)
    assert victim.running and victim.peer_id == old_id
    connected = {p["Peer"] for p in ipfs_peers[0].rpc("swarm/peers")["Peers"]}
    assert victim.peer_id in connected


@pytest.mark.ipfs
def test_stopping_the_set_leaves_no_process(tmp_path: Path) -> None:
    started = peers_module.start_peers(tmp_path, 2, prefix="tmp")
    pids = [peer.pid for peer in started if peer.pid is not None]
    assert len(pids) == 2
    assert all(alive(pid) for pid in pids)
    started[0].kill()  # one already dead must not stop the others from being stopped
    peers_module.stop_peers(started)
    assert not any(alive(pid) for pid in pids)


def test_missing_node_modules_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(peers_module, "JSIPFS", tmp_path / "node_modules" / ".bin" / "jsipfs")
    with pytest.raises(pytest.fail.Exception, match="run `make testnode`"):
        plugin._require()
