"""One contract for every `PinBackend`: a real js-ipfs peer (Kubo RPC), IPFS Cluster and a pinning service
(the real clients against `pinner.testing.orchestrators`), and the in-memory fakes of `pinner.testing.nodes`.

The replication service relies on exactly these behaviours, whichever kind of node it talks to; a fake
that other tests stand in for a backend must keep them too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pinner.ipfs.cluster import ClusterClient, ClusterConfig
from pinner.ipfs.kubo import KuboClient
from pinner.ipfs.pinning_service import PinningServiceClient, PinningServiceConfig
from pinner.ipfs.protocol import PinBackend, PinState
from pinner.testing.nodes import FakeAddingNode, FakeKuboNode, FakeOrchestrator
from pinner.testing.orchestrators import FakeCluster, FakePinningService


@dataclass
class Subject:
    backend: PinBackend
    cid: str
    origins: tuple[str, ...]


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture(
    params=[
        pytest.param("kubo", marks=pytest.mark.ipfs),
        "cluster",
        "pinning_service",
        "fake_kubo",
        "fake_adding_node",
        "fake_orchestrator",
    ]
)
async def subject(
    request: pytest.FixtureRequest,
    aiohttp_server: Any,
    dag_factory: Callable[[bytes], Any],
    tmp_path: Path,
) -> AsyncIterator[Subject]:
    dag = dag_factory(request.node.nodeid.encode())
    if request.param.startswith("fake_"):  # the origin holds the blocks without pinning them, as above
        origin, addr = FakeKuboNode("http://127.0.0.1:1"), "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWFake1"
        await origin.import_car(one(dag.car), pin_roots=False)
        fakes: dict[str, FakeKuboNode | FakeOrchestrator] = {
            "fake_kubo": FakeKuboNode("http://127.0.0.1:2"),
            "fake_adding_node": FakeAddingNode(tmp_path / "node", "http://127.0.0.1:3"),
            "fake_orchestrator": FakeOrchestrator("http://127.0.0.1:4"),
        }
        fake = fakes[request.param]
        fake.peers[addr] = origin
        yield Subject(fake, dag.root, (addr,))
        return
    async with aiohttp.ClientSession() as session:
        if request.param == "kubo":
            peers = request.getfixturevalue("ipfs_peers")
            source = KuboClient(peers[0].api_url, session=session)
            await source.import_car(one(dag.car), pin_roots=False)
            yield Subject(
                KuboClient(peers[1].api_url, session=session), dag.root, (peers[0].swarm_multiaddr,)
            )
            return
        if request.param == "cluster":
            server = await aiohttp_server(FakeCluster().app())
            config = ClusterConfig(poll_interval=0.01, pin_no_progress_timeout=5)
            backend: PinBackend = ClusterClient(str(server.make_url("/")), session=session, config=config)
        else:
            fake = FakePinningService()
            server = await aiohttp_server(fake.app())
            psa_config = PinningServiceConfig(poll_interval=0.01, pin_no_progress_timeout=5)
            backend = PinningServiceClient(
                str(server.make_url("/")), fake.token, session=session, config=psa_config
            )
        yield Subject(backend, dag.root, ("/ip4/127.0.0.1/tcp/4001/p2p/QmOrigin",))


async def pins(backend: PinBackend) -> set[str]:
    return {cid async for cid in backend.list_pins()}


async def test_is_a_pin_backend(subject: Subject) -> None:
    assert isinstance(subject.backend, PinBackend)


async def test_info_names_the_backend(subject: Subject) -> None:
    info = await subject.backend.info()
    assert info.url == subject.backend.url and info.version


async def test_pin_then_status_then_list(subject: Subject) -> None:
    backend, cid = subject.backend, subject.cid
    assert (await backend.pin_status(cid)).state is PinState.UNPINNED
    status = await backend.pin(cid, name="contract", origins=subject.origins)
    assert status.state is PinState.PINNED and status.replicas >= 1 and status.cid == cid
    assert (await backend.pin_status(cid)).state is PinState.PINNED
    assert cid in await pins(backend)


async def test_pin_is_idempotent(subject: Subject) -> None:
    backend, cid = subject.backend, subject.cid
    await backend.pin(cid, origins=subject.origins)
    assert (await backend.pin(cid, origins=subject.origins)).state is PinState.PINNED
    assert [p for p in await pins(backend) if p == cid] == [cid]


async def test_unpin_then_gone_and_unpin_again_is_fine(subject: Subject) -> None:
    backend, cid = subject.backend, subject.cid
    await backend.pin(cid, origins=subject.origins)
    await backend.unpin(cid)
    assert (await backend.pin_status(cid)).state is PinState.UNPINNED
    assert cid not in await pins(backend)
    await backend.unpin(cid)
