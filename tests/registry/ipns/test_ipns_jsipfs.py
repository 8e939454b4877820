"""The ``ipns-publish`` path against real js-ipfs peers: our records are taken (``dht/put``) and resolve there.

js-ipfs has no ``routing/put``, so the Kubo client falls back to ``dht/put``; the key is sent in the
base58 peer-id form, the only one js-ipfs resolves (it reads ``k51...`` as a DNSLink name).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.states import NodeKind, NodeState
from registry.db.models import IpfsNode, Model
from registry.ipns.channels import IpnsChannelConfig, IpnsChannels
from registry.ipns.publish import peer_id_of
from registry.replication.clients import ClientFactory, NodeClientConfig
from registry.trust.sealing import generate_kek
from tests.factories import PackFactory

pytestmark = [pytest.mark.ipfs, pytest.mark.slow]


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    from tests.ipfs_testnode.peers import TestnodeMissing, require_jsipfs, running_peers

    try:
        require_jsipfs()
    except TestnodeMissing as e:
        pytest.fail(str(e), pytrace=False)
    with running_peers(tmp_path_factory.mktemp("ipns-channel-peers"), 2, prefix="chan") as started:
        yield started


def _resolve(peer: Any, name: str) -> tuple[int, dict[str, Any]]:
    url = f"{peer.api_url}/api/v0/name/resolve?arg={name}&timeout=10s"
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_channel_record_is_put_to_a_js_ipfs_node_and_resolves(
    sessions: async_sessionmaker[AsyncSession], pack_factory: PackFactory, peers: list[Any]
) -> None:
    configured, other = peers
    first = await pack_factory.make("acme/tiny", "1")
    second = await pack_factory.make("acme/tiny", "2")
    async with sessions() as s, s.begin():
        s.add(IpfsNode(name="js", kind=NodeKind.KUBO, url=configured.api_url, state=NodeState.UP))
        mid = (await s.execute(select(Model.id))).scalar_one()
    kek = generate_kek()
    async with aiohttp.ClientSession() as http:
        nodes = ClientFactory(http, kek, NodeClientConfig())
        channels = IpnsChannels(sessions, kek, None, IpnsChannelConfig(), sinks=nodes.kubo)

        async with sessions() as s, s.begin():
            rec = await channels.sign(s, mid, "curated", first)
        assert await channels.publish(rec.name) == [configured.api_url]
        pid = peer_id_of(rec.name)
        assert _resolve(configured, pid) == (200, {"Path": f"/ipfs/{first}"})

        async with sessions() as s, s.begin():
            await channels.sign(s, mid, "curated", second)  # sequence 1
        await channels.publish(rec.name)
    assert _resolve(configured, pid) == (200, {"Path": f"/ipfs/{second}"})
    # The put reaches the peer it is connected to as well (observed with these test peers).
    assert _resolve(other, pid) == (200, {"Path": f"/ipfs/{second}"})
    assert (await channels.latest(rec.name)).published_at is not None
