"""The publisher's CLI against a live registry: token -> publish -> show -> pointer -> pull, resume, refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.app.main import cli
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer
from tests.registry.cli.clihelp import SHARDS, local_token, run, write_pack

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_walk_through_token_publish_show_pointer_pull(server: LiveServer, tmp_path: Path) -> None:
    tok = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")
    assert tok["token"].startswith("mpk_") and tok["namespaces"] == ["acme"]
    pack = write_pack(tmp_path / "pack")

    r = run(server, "publish", str(pack), "--name", "acme/tiny", "--json", token=tok["token"])
    assert r.exit_code == 0, r.output
    published = json.loads(r.output)
    assert published["created"] and published["uploaded_shards"] == 2
    cid = published["cid"]

    r = run(server, "publish", str(pack), "--name", "acme/tiny", token=tok["token"])
    assert r.exit_code == 0 and r.stdout.strip() == cid  # human mode: the CID alone on stdout

    detail = json.loads(run(server, "show", "acme/tiny@latest", "--json").output)
    assert detail["cid"] == cid and [s["filename"] for s in detail["shards"]] == [n for n, _ in SHARDS]
    assert "model-00001-of-00002.safetensors" in run(server, "show", cid).output

    v2 = write_pack(tmp_path / "v2", version="2.0.0")
    cid2 = run(
        server, "publish", str(v2), "--name", "acme/tiny", "--tag", "beta", token=tok["token"]
    ).stdout.strip()
    assert run(server, "pointer", "get", "acme/tiny@beta").output.strip() == cid2
    r = run(server, "pointer", "set", "acme/tiny@stable", cid, "--reason", "first", token=tok["token"])
    assert r.exit_code == 0, r.output
    r = run(server, "pointer", "set", "acme/tiny@stable", cid2, "--expect", cid2, token=tok["token"])
    assert r.exit_code == 1 and "not" in r.output  # stale expectation: 412, one sentence
    hist = json.loads(run(server, "pointer", "history", "acme/tiny@stable", "--json").output)
    assert [(h["to_cid"], h["reason"]) for h in hist] == [(cid, "first")]
    r = run(server, "pointer", "set", "acme/tiny@curated", cid, token=tok["token"])
    assert r.exit_code == 1 and "reserved" in r.output

    models = json.loads(run(server, "ls", "--json").output)
    assert [(m["namespace"], m["name"]) for m in models] == [("acme", "tiny")]
    versions = json.loads(run(server, "ls", "acme/tiny", "--json").output)
    assert {v["cid"] for v in versions} == {cid, cid2}

    out = tmp_path / "pulled"
    r = run(server, "pull", "acme/tiny@stable", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["downloaded"] == 2
    for name, data in SHARDS:
        assert (out / name).read_bytes() == data
    assert not list(out.glob(".*part*"))  # no half-written file left behind
    from model_core.format.pack import pack_cid_of

    assert pack_cid_of((out / "manifest.json").read_bytes()) == cid


def test_publish_resumes_and_pull_repairs_a_damaged_file(server: LiveServer, tmp_path: Path) -> None:
    tok = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")["token"]
    pack = write_pack(tmp_path / "pack")
    server.run(_upload_first(server, tok))  # an interrupted earlier run got one shard up
    r = run(server, "publish", str(pack), "--name", "acme/tiny", "--json", token=tok)
    assert r.exit_code == 0 and json.loads(r.output)["uploaded_shards"] == 1
    out = tmp_path / "pulled"
    cid = json.loads(r.output)["cid"]
    assert run(server, "pull", cid, str(out)).exit_code == 0
    (out / SHARDS[0][0]).write_bytes(b"garbage")
    r = run(server, "pull", cid, str(out), "--json")
    assert json.loads(r.output)["downloaded"] == 1
    assert hashlib.sha256((out / SHARDS[0][0]).read_bytes()).digest() == hashlib.sha256(SHARDS[0][1]).digest()


async def _upload_first(server: LiveServer, tok: str) -> None:
    from aiohttp import ClientSession

    async with ClientSession() as s:
        r = await s.put(
            f"{server.url}/v1/blobs/{helpers.cid_of(SHARDS[0][1])}",
            data=SHARDS[0][1],
            headers=helpers.bearer(tok),
        )
        assert r.status == 201


def test_refusals_are_one_sentence_and_exit_1(server: LiveServer, tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "pack")
    r = run(server, "publish", str(pack), "--name", "acme/tiny")
    assert r.exit_code == 1 and "needs an API token" in r.output and "Traceback" not in r.output
    tok = local_token(server.settings, "--publisher", "bob", "--namespace", "beta")["token"]
    r = run(server, "publish", str(pack), "--name", "acme/tiny", token=tok)
    assert r.exit_code == 1 and "limited to namespaces beta; not 'acme'" in r.output
    (pack / SHARDS[1][0]).write_bytes(b"tampered")
    r = run(server, "publish", str(pack), "--name", "beta/tiny", token=tok)
    assert r.exit_code == 1 and SHARDS[1][0] in r.output and "manifest says" in r.output
    r = run(server, "publish", str(pack), "--name", "beta/ti--ny", token=tok)
    assert r.exit_code == 1 and "not allowed" in r.output
    r = run(server, "show", "acme/none")
    assert r.exit_code == 1 and "no pointer" in r.output
    r = CliRunner().invoke(cli, ["ls"], env={"MODELPACK_REGISTRY": "http://127.0.0.1:9"})
    assert r.exit_code == 1 and "cannot reach the registry" in r.output


BIG = [("model-00001-of-00001.safetensors", helpers.shard_bytes(6 * 1024 * 1024, 23))]


@pytest.mark.parametrize("offset", [100, 5 * 1024 * 1024], ids=["first-batch", "mid-stream"])
def test_pull_refuses_bytes_that_do_not_verify_and_leaves_no_file(
    server: LiveServer, tmp_path: Path, offset: int
) -> None:
    from registry.api.keys import BLOCKSTORE

    tok = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")["token"]
    pack = write_pack(tmp_path / "pack", BIG)
    cid = run(server, "publish", str(pack), "--name", "acme/tiny", token=tok).stdout.strip()
    stored = server.app[BLOCKSTORE].file_path(helpers.cid_of(BIG[0][1]))
    stored.chmod(0o644)
    raw = bytearray(stored.read_bytes())
    raw[offset] ^= 0xFF  # bit rot on the server's disk
    stored.write_bytes(bytes(raw))
    out = tmp_path / "pulled"
    r = run(server, "pull", cid, str(out))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert not (out / BIG[0][0]).exists() and not list(out.glob(".*part*"))
    assert not (out / "manifest.json").exists()
