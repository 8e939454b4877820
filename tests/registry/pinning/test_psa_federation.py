"""Federation (issue #14 item 5): daemon A replicates a pack to daemon B through B's Pinning Service API with
our own client (node kind ``pinning-service``). A pushes the blocks to its own js-ipfs peer, B's pins fetch
them from there (A names it as origin) onto B's two js-ipfs peers; A's replica matrix shows B pinned and
A's audit passes through B's API; when A collects the pack, it deletes its pins on B and B unpins its peers.
Two whole daemons (workers on, each its own database and data dir).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import delete

from pinner.cids import normalize_cid
from registry.api.keys import REPLICATION, SESSIONS
from registry.app.daemon import build_app
from registry.db.models import Pointer
from registry.settings import Settings
from tests import dbutil
from tests.ipfs_testnode.peers import IpfsPeer
from tests.registry.api import helpers
from tests.registry.pinning.livepins import publish_v1

pytestmark = [pytest.mark.ipfs, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@dataclass
class Daemon:
    client: TestClient
    admin: str

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def get(self, path: str, tok: str | None = None) -> Any:
        r = await self.client.get(path, headers=helpers.bearer(tok or self.admin))
        assert r.status == 200, await r.text()
        return await r.json()


@dataclass
class Federation:
    a: Daemon
    b: Daemon
    a_peer: IpfsPeer  # A's own Kubo node (the origin B's peers fetch from)
    b_peers: list[IpfsPeer]
    publisher: str  # publishes on A
    pinner: str  # A's pin-scope token on B


def daemon_settings(base: Settings, data_dir: Path, db_url: str, **pinning: object) -> Settings:
    fast = {"node_down_grace_s": 0.0, "poll_interval_s": 0.2, "replication_min": 2, "replication_max": 2}
    return base.model_copy(
        update={
            "storage": base.storage.model_copy(update={"data_dir": data_dir}),
            "database": base.database.model_copy(update={"url": db_url}),
            "jobs": base.jobs.model_copy(update={"workers": 2}),
            "replication": base.replication.model_copy(update=fast),
            "validation": base.validation.model_copy(update={"auto_validate": False}),
            "pinning": base.pinning.model_copy(update=pinning),
        }
    )


async def wait_for(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def peer_pins(peer: IpfsPeer) -> set[str]:
    keys = (await asyncio.to_thread(peer.rpc, "pin/ls", type="recursive")).get("Keys") or {}
    return {normalize_cid(k) for k in keys}


@pytest.fixture
async def federation(
    settings: Settings,
    sqlite_template: Path,
    tmp_path: Path,
    ipfs_peers: list[IpfsPeer],
    ipfs_peer_factory: Callable[[int], list[IpfsPeer]],
) -> AsyncIterator[Federation]:
    (a_peer,) = await asyncio.to_thread(ipfs_peer_factory, 1)  # connected to none of B's peers
    b_peers = ipfs_peers[1:]
    b_db = dbutil.clone_sqlite(sqlite_template, tmp_path / "b.sqlite3")
    a_app = build_app(daemon_settings(settings, tmp_path / "a", settings.database.url))
    b_app = build_app(
        daemon_settings(
            settings, tmp_path / "b", b_db, replication_min=2, replication_max=2, pin_timeout_s=120
        )
    )
    async with TestClient(TestServer(b_app)) as b_client, TestClient(TestServer(a_app)) as a_client:
        a = Daemon(a_client, await helpers.token(a_app, "root", scopes=("admin",)))
        b = Daemon(b_client, await helpers.token(b_app, "root", scopes=("admin",)))
        for i, peer in enumerate(b_peers):
            await b_app[REPLICATION].nodes.add(f"peer{i}", "kubo", peer.api_url)
        await b_app[REPLICATION].check_nodes()
        yield Federation(
            a,
            b,
            a_peer,
            b_peers,
            await helpers.token(a_app, "alice", ["acme"]),
            await helpers.token(b_app, "daemon-a", scopes=("pin",)),
        )


async def test_a_pack_replicates_to_a_second_daemon_through_its_pinning_service_api(
    federation: Federation,
) -> None:
    fed = federation
    a, b = fed.a, fed.b
    for name, kind, url, auth in (
        ("own", "kubo", fed.a_peer.api_url, None),
        ("daemon-b", "pinning-service", f"{b.url}/psa", {"type": "bearer", "token": fed.pinner}),
    ):
        body: dict[str, Any] = {"name": name, "kind": kind, "url": url} | ({"auth": auth} if auth else {})
        r = await a.client.post("/v1/nodes", json=body, headers=helpers.bearer(a.admin))
        assert r.status == 201 and (await r.json())["state"] == "up", await r.text()

    shards = [(f"model-{i:05d}-of-00002.safetensors", os.urandom(300_000)) for i in range(2)]
    pack = await publish_v1(a.client, fed.publisher, "m", shards)

    async def replicated() -> bool:
        m = await a.get(f"/v1/packs/{pack}/replicas")
        return bool(m["satisfied"]) and all(u["replicas"].get("daemon-b") == "pinned" for u in m["units"])

    await wait_for(replicated, "A's replica matrix to show every unit pinned on daemon B")
    matrix = await a.get(f"/v1/packs/{pack}/replicas")
    units = {normalize_cid(u["cid"]) for u in matrix["units"]}
    assert len(units) == 3  # two shards and the manifest
    for peer in fed.b_peers:  # B placed each unit on both of its peers, fetched from A's peer
        assert units <= await peer_pins(peer)

    listed = await b.get("/psa/pins?status=pinned&limit=1000", fed.pinner)
    assert {normalize_cid(p["pin"]["cid"]) for p in listed["results"]} == units
    for p in listed["results"]:  # B names its own peers as delegates
        assert any(peer.peer_id in d for d in p["delegates"] for peer in fed.b_peers)

    upkeep = a.client.app[REPLICATION].upkeep
    audit = await upkeep.audit_batch()
    assert audit["lost"] == 0 and audit["ok"] >= 2 * len(units)  # A's own peer and daemon B

    # A collects the pack (dead: no pointer, no retention): it deletes its pins on B, B unpins its peers.
    async with a.client.app[SESSIONS]() as s, s.begin():
        await s.execute(delete(Pointer).where(Pointer.pack_cid == pack))
    upkeep.config = dataclasses.replace(upkeep.config, gc_retention_s=0.0)
    assert (await upkeep.collect_garbage())["unpinned"] == 2 * len(units)

    async def unpinned_on_b() -> bool:
        return not any([units & await peer_pins(peer) for peer in fed.b_peers])

    await wait_for(unpinned_on_b, "B to unpin what A no longer needs from its peers")
    left = await b.get("/psa/pins?status=queued,pinning,pinned,failed", fed.pinner)
    assert left["count"] == 0
