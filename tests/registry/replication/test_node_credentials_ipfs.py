"""A node registered with credentials is used, with them, by every part that calls nodes through the one
client factory: fetch-by-CID, the gate's shard reads and IPNS publishing (a real js-ipfs peer behind a
proxy that refuses any request without the right basic-auth header)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from model_core.format.digest import Sha256Digest
from model_core.format.pack import load_manifest
from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.ipfs.errors import NodeError
from pinner.ipfs.http import BasicAuth
from pinner.ipfs.kubo import KuboClient
from registry.db.listings import find_listing
from registry.db.models import Blob, Model, PackState
from registry.gate.shards import ShardSpec, gather
from registry.ipns.channels import IpnsChannelConfig, IpnsChannels
from registry.ipns.publish import peer_id_of
from registry.jobs.sql import SqlJobQueue
from registry.names import parse_model_name
from registry.packs.fetch import ShardFetchService
from registry.packs.publish import PublishService
from registry.replication.clients import ClientFactory, NodeClientConfig
from registry.replication.nodes import NodeRegistry
from registry.replication.shard_fetch import NodeShardFetcher
from tests.factories import principal
from tests.ipfs_testnode.peers import IpfsPeer

pytestmark = [
    pytest.mark.ipfs,
    pytest.mark.slow,
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]

AUTH = BasicAuth("modelpack", "s3cret")
EXPECTED = "Basic " + base64.b64encode(f"{AUTH.username}:{AUTH.password}".encode()).decode()


@dataclass
class Locked:
    url: str
    seen: list[str] = field(default_factory=list)  # commands forwarded
    refused: int = 0


@pytest.fixture
async def locked(ipfs_peers: list[IpfsPeer], aiohttp_server: Any) -> AsyncIterator[Locked]:
    """Peer 0's RPC API behind basic auth: a request without the credentials gets a 401."""
    upstream = ipfs_peers[0].api_url
    state = Locked("")
    async with aiohttp.ClientSession() as http:

        async def forward(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != EXPECTED:
                state.refused += 1
                return web.Response(status=401, text="unauthorized")
            cmd = request.match_info["cmd"]
            state.seen.append(cmd)
            url = URL(f"{upstream}/api/v0/{cmd}?{request.query_string}", encoded=True)
            headers = {k: v for k, v in request.headers.items() if k.lower() == "content-type"}
            async with http.post(url, data=await request.read(), headers=headers) as up:
                out = web.StreamResponse(status=up.status)
                out.content_type = up.content_type
                await out.prepare(request)
                async for chunk in up.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v0/{cmd:.+}", forward)
        server = await aiohttp_server(app)
        state.url = str(server.make_url("")).rstrip("/")
        yield state


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_node_with_credentials_serves_fetch_the_gate_and_ipns(
    sessions: async_sessionmaker[AsyncSession], locked: Locked, ipfs_peers: list[IpfsPeer], tmp_path: Path
) -> None:
    async with KuboClient(locked.url) as anonymous:
        with pytest.raises(NodeError):
            await anonymous.info()
    assert locked.refused == 1  # the proxy does refuse a client without credentials

    data = hashlib.sha256(b"locked shard").digest() * 4000
    async with KuboClient(ipfs_peers[0].api_url) as peer:
        cid = str((await peer.add(_once(data), cid_version=1, raw_leaves=True)).cid)
    sha = hashlib.sha256(data).hexdigest()

    kek = bytes(range(32))
    await NodeRegistry(sessions, kek, allowed_hosts=("127.0.0.1",)).add(
        "locked", "kubo", locked.url, auth=AUTH
    )
    async with aiohttp.ClientSession() as http:
        clients = ClientFactory(http, kek, NodeClientConfig(request_timeout_s=30.0))
        fetcher = NodeShardFetcher(sessions, clients)

        # fetch-by-CID: published without the bytes, then fetched from the locked node.
        queue = SqlJobQueue(sessions)
        doc = {
            "format": "safetensors",
            "model_name": "tiny",
            "model_version": "1.0.0",
            "config": {"d_model": 8},
            "shards": [
                {"filename": "model.safetensors", "cid": cid, "sha256": f"sha256:{sha}", "size": len(data)}
            ],
        }
        who = await principal(sessions, "alice", ["acme"])
        published = await PublishService(sessions, queue, nodes=fetcher).publish(
            who, parse_model_name("acme/tiny"), load_manifest(doc)
        )
        assert published.state == PackState.RECEIVED.value
        store = FsBlockstore(tmp_path / "blocks", FsBlockstoreConfig(fsync=False))
        job = await queue.claim(["fetch"], "test")
        assert job is not None
        await ShardFetchService(sessions, store, fetcher, queue).handle_fetch(job)
        async with sessions() as s:
            pack = await find_listing(s, published.cid)
            assert pack.state is PackState.AVAILABLE
            assert (await s.get(Blob, cid)) is not None
            mid = (await s.execute(select(Model.id))).scalar_one()
        assert b"".join(store.iter_file_bytes(cid)) == data

        # The gate: the shard read from the node (no blockstore given) and verified.
        spec = ShardSpec("model.safetensors", cid, Sha256Digest(sha), len(data))
        got = await gather(tmp_path / "gathered", b"{}", [spec], None, fetcher, 60)
        assert got.sources == {"model.safetensors": "node:locked"}
        assert (tmp_path / "gathered" / "model.safetensors").read_bytes() == data

        # IPNS publishing: the record is put to the locked node.
        channels = IpnsChannels(sessions, kek, None, IpnsChannelConfig(), sinks=clients.kubo)
        async with sessions() as s, s.begin():
            rec = await channels.sign(s, mid, "curated", published.cid)
        assert await channels.publish(rec.name) == [locked.url]
        resolve = f"{ipfs_peers[0].api_url}/api/v0/name/resolve"
        async with http.post(resolve, params={"arg": peer_id_of(rec.name), "timeout": "10s"}) as r:
            assert r.status == 200 and (await r.json())["Path"] == f"/ipfs/{published.cid}"

    assert locked.refused == 1  # every call made through the factory carried the credentials
    assert "cat" in locked.seen and {"routing/put", "dht/put"} & set(locked.seen)
