"""A daemon with the PSA mounted (no worker: pins stay as requested), and pin-scope tokens for two publishers;
``live``: a daemon with workers placing pins on two of the session's js-ipfs peers."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer
from multiformats import CID, multihash

from registry.api.keys import REPLICATION
from registry.app.daemon import build_app
from registry.settings import Settings
from tests.ipfs_testnode.peers import IpfsPeer
from tests.registry.api import helpers
from tests.registry.pinning.livepins import PIN_TIMEOUT_S, Live


def raw_cid(data: bytes) -> str:
    """The CIDv1 (raw, sha2-256) of ``data``, as the compliance suite makes them."""
    return str(CID("base32", 1, "raw", multihash.wrap(hashlib.sha256(data).digest(), "sha2-256")))


@dataclass
class Psa:
    client: TestClient
    alice: str  # pin scope, publisher alice
    bob: str  # pin scope, publisher bob
    publisher_only: str  # publish scope only

    def h(self, tok: str) -> dict[str, str]:
        return helpers.bearer(tok)


def psa_settings(settings: Settings, **pinning: object) -> Settings:
    return settings.model_copy(
        update={
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
            "pinning": settings.pinning.model_copy(update=pinning),
        }
    )


@pytest.fixture
def pin_settings(settings: Settings) -> Settings:
    return psa_settings(settings, max_pins=5)


@pytest.fixture
async def psa(pin_settings: Settings) -> AsyncIterator[Psa]:
    app = build_app(pin_settings)
    async with TestClient(TestServer(app)) as client:
        yield Psa(
            client,
            await helpers.token(app, "alice", scopes=("pin",)),
            await helpers.token(app, "bob", scopes=("pin",)),
            await helpers.token(app, "carol", ["acme"]),
        )


@pytest.fixture
async def live(settings: Settings, ipfs_peers: list[IpfsPeer]) -> AsyncIterator[Live]:
    settings = settings.model_copy(
        update={
            "jobs": settings.jobs.model_copy(update={"workers": 2}),
            "pinning": settings.pinning.model_copy(
                update={"pin_timeout_s": PIN_TIMEOUT_S, "replication_min": 2, "replication_max": 2}
            ),
        }
    )
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        nodes = ipfs_peers[1:]
        for i, peer in enumerate(nodes):
            await app[REPLICATION].nodes.add(f"peer{i}", "kubo", peer.api_url)
        await app[REPLICATION].check_nodes()
        yield Live(client, await helpers.token(app, "alice", scopes=("pin",)), nodes)
