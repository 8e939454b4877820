"""``modelpack pin add|ls|show|replace|rm`` against a live daemon's Pinning Service API (no nodes: pins stay
queued, or fail at the short deadline when a worker runs); the real console script for one round trip; bad
input is one sentence and a non-zero exit, with nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from registry.app.main import cli
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer
from tests.registry.pinning.conftest import psa_settings, raw_cid

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
MODELPACK = Path(sys.executable).parent / "modelpack"


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(psa_settings(settings)) as srv:
        yield srv


def run(srv: LiveServer, *args: str, token: str = "", **env: str) -> Result:
    base = {"MODELPACK_REGISTRY": srv.url, "MODELPACK_TOKEN": token, "COLUMNS": "250"}
    return CliRunner().invoke(cli, ["pin", *args], env=base | env, catch_exceptions=False)


def one_sentence(r: Result, code: int, *words: str) -> None:
    lines = [line for line in r.output.strip().splitlines() if line.startswith("Error:")]
    assert r.exit_code == code and len(lines) == 1, r.output
    for w in words:
        assert w in lines[0], r.output


def test_add_ls_show_replace_rm(server: LiveServer) -> None:
    tok = server.run(helpers.token(server.app, "alice", scopes=("pin",)))
    first, second = raw_cid(b"first"), raw_cid(b"second")
    r = run(server, "add", first, "--name", "weights", "--meta", "team=ml", token=tok)
    assert r.exit_code == 0, r.output
    rid = r.stdout.strip()
    assert f"pin {first}: queued" in r.stderr

    r = run(server, "ls", token=tok)  # the spec's default: pinned only
    assert r.exit_code == 0 and "no pins match" in r.output
    r = run(server, "ls", "--status", "queued", "--meta", "team=ml", "--json", token=tok)
    page = json.loads(r.output)
    assert page["count"] == 1 and page["results"][0]["requestid"] == rid
    r = run(server, "ls", "--status", "queued", "--name", "WEIGHT", "--match", "ipartial", token=tok)
    assert rid in r.output and "weights" in r.output
    r = run(server, "show", rid, token=tok)
    assert r.exit_code == 0 and f"{rid}: queued" in r.output and first in r.output

    r = run(server, "replace", rid, second, "--json", token=tok)
    assert r.exit_code == 0, r.output
    new = json.loads(r.output)
    assert new["pin"]["cid"] == second and new["requestid"] != rid
    one_sentence(run(server, "show", rid, token=tok), 1, "no pin with requestid", rid)  # replaced: hidden

    r = run(server, "rm", new["requestid"], token=tok)
    assert r.exit_code == 0 and f"removed pin {new['requestid']}" in r.output
    r = run(server, "ls", "--status", "queued", "--json", token=tok)
    assert json.loads(r.output)["count"] == 0


def test_bad_input_is_one_sentence_and_writes_nothing(server: LiveServer) -> None:
    tok = server.run(helpers.token(server.app, "alice", scopes=("pin",)))
    other = server.run(helpers.token(server.app, "bob", scopes=("pin",)))
    one_sentence(run(server, "add", "not-a-cid", token=tok), 1, "'not-a-cid' is not a valid CID")
    one_sentence(run(server, "add", raw_cid(b"x"), "--origin", "/ip4/nope", token=tok), 1, "/ip4/nope")
    one_sentence(run(server, "add", raw_cid(b"x"), "--meta", "novalue", token=tok), 2, "'novalue'")
    one_sentence(run(server, "add", raw_cid(b"x"), "--name", "n" * 300, token=tok), 1, "name")
    one_sentence(run(server, "add", raw_cid(b"x")), 2, "pin scope")
    one_sentence(run(server, "add", raw_cid(b"x"), token="wrong"), 1)
    one_sentence(run(server, "ls", "--limit", "0", token=tok), 2, "--limit")
    one_sentence(run(server, "ls", "--before", "yesterday", token=tok), 1, "yesterday")
    one_sentence(run(server, "ls", "--endpoint", "ftp://x", token=tok), 2, "ftp://x")
    one_sentence(run(server, "rm", "0" * 36, token=tok), 1, "no pin with requestid")
    r = run(server, "add", raw_cid(b"mine"), token=tok)
    one_sentence(run(server, "rm", r.stdout.strip(), token=other), 1, "no pin with requestid")  # not bob's
    r = run(server, "ls", "--status", "queued", "--json", token=tok)
    assert json.loads(r.output)["count"] == 1  # only the one good pin was written


def test_wait_reports_a_failed_pin_and_exits_1(settings: Settings) -> None:
    quick = psa_settings(settings, pin_timeout_s=0.5)
    quick = quick.model_copy(update={"jobs": quick.jobs.model_copy(update={"workers": 1})})
    with LiveServer(quick) as srv:
        tok = srv.run(helpers.token(srv.app, "alice", scopes=("pin",)))
        r = run(srv, "add", raw_cid(b"nobody has it"), "--wait", "--timeout", "60", token=tok)
    assert r.exit_code == 1 and ": failed (failed: " in r.stderr, r.output


def test_round_trip_with_the_console_script(server: LiveServer) -> None:
    tok = server.run(helpers.token(server.app, "alice", scopes=("pin",)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    env |= {"MODELPACK_TOKEN": tok, "MODELPACK_PSA_ENDPOINT": f"{server.url}/psa"}

    def modelpack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MODELPACK), "pin", *args], env=env, capture_output=True, text=True, timeout=60
        )

    cid = raw_cid(b"round trip")
    added = modelpack("add", cid, "--name", "rt")
    assert added.returncode == 0, added.stderr
    rid = added.stdout.strip()
    listed = modelpack("ls", "--status", "queued", "--cid", cid, "--json")
    assert [p["requestid"] for p in json.loads(listed.stdout)["results"]] == [rid]
    assert modelpack("rm", rid).returncode == 0
    gone = modelpack("show", rid)
    assert gone.returncode == 1 and gone.stderr.strip().startswith("Error: no pin with requestid")
