"""``modelpack publish --no-upload``: publish by CID; the registry fetches the shards from its IPFS nodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pinner.states import NodeKind, NodeState
from registry.api.keys import JOB_QUEUE, SESSIONS, SHARD_FETCH
from registry.db.models import IpfsNode
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer
from tests.registry.cli.clihelp import SHARDS, local_token, run, write_pack

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def node(server: LiveServer) -> Iterator[None]:
    """A Kubo stand-in on the server's loop whose ``cat`` serves the pack's shards; registered as up."""
    content = {helpers.cid_of(data): data for _, data in SHARDS}

    async def cat(request: web.Request) -> web.Response:
        return web.Response(body=content[request.query["arg"]])

    # The live daemon's health loop probes every node: answer like a healthy Kubo so it stays up.
    async def ident(request: web.Request) -> web.Response:
        return web.json_response({"ID": "12D3KooWFakeNode", "AgentVersion": "kubo/0.0-fake", "Addresses": []})

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"Version": "0.0-fake"})

    async def repo_stat(request: web.Request) -> web.Response:
        return web.json_response({"RepoSize": 0, "StorageMax": 1 << 40, "NumObjects": 0})

    async def start() -> TestServer:
        app = web.Application()
        app.router.add_post("/api/v0/cat", cat)
        app.router.add_post("/api/v0/id", ident)
        app.router.add_post("/api/v0/version", version)
        app.router.add_post("/api/v0/repo/stat", repo_stat)
        fake = TestServer(app, host="127.0.0.1")
        await fake.start_server()
        async with server.app[SESSIONS]() as s, s.begin():
            url = f"http://127.0.0.1:{fake.port}"
            s.add(IpfsNode(name="kubo0", kind=NodeKind.KUBO, url=url, state=NodeState.UP))
        return fake

    fake = server.run(start())
    yield
    server.run(fake.close())


def test_without_a_node_the_registry_asks_for_the_bytes(server: LiveServer, tmp_path: Path) -> None:
    tok = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")
    pack = write_pack(tmp_path / "pack")
    r = run(server, "publish", str(pack), "--name", "acme/tiny", "--no-upload", token=tok["token"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "not uploaded" in r.output and "add a node" in r.output


def test_no_upload_publishes_received_and_the_fetch_makes_it_available(
    server: LiveServer, node: None, tmp_path: Path
) -> None:
    tok = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")
    pack = write_pack(tmp_path / "pack")
    (pack / SHARDS[1][0]).unlink()  # on IPFS only: a shard file need not be here

    r = run(server, "publish", str(pack), "--name", "acme/tiny", "--no-upload", token=tok["token"])
    assert r.exit_code == 0, r.output
    assert "state received" in r.stderr and "fetching" in r.stderr
    cid = r.stdout.strip()
    r = run(server, "publish", str(pack), "--name", "acme/tiny", "--no-upload", "--json", token=tok["token"])
    again = json.loads(r.stdout)
    assert again["cid"] == cid and again["state"] == "received" and again["uploaded_shards"] == 0

    async def fetch() -> None:
        job = await server.app[JOB_QUEUE].claim(["fetch"], "test")
        assert job is not None
        await server.app[SHARD_FETCH].handle_fetch(job)

    server.run(fetch())
    detail = json.loads(run(server, "show", "acme/tiny@latest", "--json").output)
    assert detail["cid"] == cid and detail["state"] == "available"
    out = tmp_path / "pulled"
    assert run(server, "pull", cid, str(out)).exit_code == 0
    assert [(out / n).read_bytes() for n, _ in SHARDS] == [d for _, d in SHARDS]
