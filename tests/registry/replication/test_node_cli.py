"""`modelpack node add|ls|drain|rm` and `modelpack status` against a live registry."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner, Result

from registry.app.main import cli
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    with LiveServer(settings) as srv:
        yield srv


def run(srv: LiveServer, *args: str, token: str = "") -> Result:
    env = {"MODELPACK_REGISTRY": srv.url, "MODELPACK_TOKEN": token, "COLUMNS": "250"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_node_add_ls_drain_rm(server: LiveServer) -> None:
    admin = server.run(helpers.token(server.app, "root", scopes=("admin",)))
    r = run(server, "node", "ls", token=admin)
    assert r.exit_code == 0 and "embedded blockstore is the one replica" in r.output
    r = run(
        server,
        "node",
        "add",
        "n1",
        "http://127.0.0.1:9",
        "--tag",
        "zone=a",
        "--basic-auth",
        "u:p",
        token=admin,
    )
    assert r.exit_code == 0 and "added n1 (kubo, http://127.0.0.1:9): down" in r.output
    r = run(server, "node", "ls", "--json", token=admin)
    nodes = json.loads(r.output)
    assert [(n["name"], n["tags"], n["state"]) for n in nodes] == [("n1", {"zone": "a"}, "down")]
    r = run(server, "node", "ls", token=admin)
    assert "n1" in r.output and "zone=a" in r.output
    r = run(server, "node", "drain", "n1", token=admin)
    assert r.exit_code == 0 and "n1: draining" in r.output
    r = run(server, "node", "drain", "n1", "--undo", token=admin)
    assert "n1: in service" in r.output
    r = run(server, "node", "rm", "n1", token=admin)
    assert r.exit_code == 0 and "removed n1" in r.output


def test_node_errors_are_one_sentence(server: LiveServer) -> None:
    alice = server.run(helpers.token(server.app, "alice", ["acme"]))
    r = run(server, "node", "add", "n1", "http://127.0.0.1:9", token=alice)
    assert r.exit_code == 1 and "admin scope" in r.output and "Traceback" not in r.output
    admin = server.run(helpers.token(server.app, "root", scopes=("admin",)))
    r = run(server, "node", "add", "n1", "gopher://127.0.0.1:9", token=admin)
    assert r.exit_code == 1 and "must be http:// or https://" in r.output
    r = run(server, "node", "add", "n1", "http://127.0.0.1:9", "--tag", "novalue", token=admin)
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
    r = run(server, "node", "rm", "ghost", token=admin)
    assert r.exit_code == 1 and "no node named 'ghost'" in r.output


def test_status_shows_the_matrix_by_ref_or_cid(server: LiveServer) -> None:
    alice = server.run(helpers.token(server.app, "alice", ["acme"]))
    shards = [("model-00001-of-00001.safetensors", b"z" * 3000)]

    for _, data in shards:
        requests.put(
            f"{server.url}/v1/blobs/{helpers.cid_of(data)}", data=data, headers=helpers.bearer(alice)
        )
    body = {"manifest": helpers.manifest(shards)}
    pack = requests.post(
        f"{server.url}/v1/models/acme/tiny/packs", json=body, headers=helpers.bearer(alice)
    ).json()
    r = run(server, "status", "acme/tiny@latest")
    assert r.exit_code == 0, r.output
    assert "model-00001-of-00001.safetensors" in r.output and "1/1" in r.output and "replicated" in r.output
    r = run(server, "status", pack["cid"], "--json")
    assert json.loads(r.output)["satisfied"] is True
    r = run(server, "status", "acme/nothing@latest")
    assert r.exit_code == 1
