"""pytest plugin: `ipfs_peers` (three connected js-ipfs peers per session) and a per-test peer factory.

Register with `pytest_plugins = ["tests.ipfs_testnode.plugin"]`. Missing node_modules fails the
ipfs tests with the command that fixes it; it never skips them silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ipfs_testnode.peers import IpfsPeer, TestnodeMissing, require_jsipfs, start_peers, stop_peers

PEER_COUNT = 3


def _require() -> None:
    try:
        require_jsipfs()
    except TestnodeMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def ipfs_peers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[IpfsPeer]]:
    """Three js-ipfs peers on 127.0.0.1, empty bootstrap lists, swarm-connected to each other.

    Shared by the session: a test that stops or kills one must call `restore_peers(ipfs_peers)` in a
    `finally`; a test that wipes a repo should use `ipfs_peer_factory` for peers of its own.
    """
    _require()
    started = time.monotonic()
    peers = start_peers(tmp_path_factory.mktemp("ipfs-peers"), PEER_COUNT)
    elapsed = time.monotonic() - started
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"ipfs_peers: {PEER_COUNT} js-ipfs peers up and connected in {elapsed:.1f}s")
    try:
        yield peers
    finally:
        stop_peers(peers)


@pytest.fixture
def ipfs_peer_factory(tmp_path: Path) -> Iterator[Callable[[int], list[IpfsPeer]]]:
    """Start fresh peers owned by one test (stopped at its end): for tests that kill or wipe peers."""
    _require()
    owned: list[IpfsPeer] = []

    def make(count: int = 1) -> list[IpfsPeer]:
        peers = start_peers(tmp_path / f"set{len(owned)}", count, prefix="own")
        owned.extend(peers)
        return peers

    try:
        yield make
    finally:
        stop_peers(owned)
