"""``modelpack events`` against a live registry: lines and JSON, filters, bad input, and ``--follow``'s stream
(replayed from an id, then live, and resumed after the server cuts a stream)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from registry.api.keys import REGISTRY, SESSIONS
from registry.client import RegistryClient
from registry.client_events import follow
from registry.events import store
from tests.registry.api.live import LiveServer
from tests.registry.cli.clihelp import run

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def record(server: LiveServer, type: str, **payload: Any) -> None:
    async def go() -> None:
        async with server.app[SESSIONS]() as s, s.begin():
            await store.record(s, type, model=payload.pop("model", None), payload=payload)

    server.run(go())


def test_lists_events_as_lines_and_json_with_filters(server: LiveServer) -> None:
    record(server, "node.down", node="peer0", error="node_unreachable")
    record(server, "pack.curated", model="acme/tiny", reason="every rule holds")
    r = run(server, "events")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert len(lines) == 2 and "node.down" in lines[0] and "peer0" in lines[0]
    assert "pack.curated" in lines[1] and "acme/tiny" in lines[1] and "every rule holds" in lines[1]
    docs = [json.loads(line) for line in run(server, "events", "--json").output.splitlines()]
    assert [d["type"] for d in docs] == ["node.down", "pack.curated"]
    r = run(server, "events", "--json", "--type", "pack.curated", "--namespace", "acme")
    assert [json.loads(line)["model"] for line in r.output.splitlines()] == ["acme/tiny"]
    r = run(server, "events", "--after", str(docs[-1]["id"]))
    assert r.exit_code == 0 and r.output.strip() == "no events"  # (on stderr)
    r = run(server, "events", "--type", "pack.exploded")
    assert r.exit_code == 1 and "pack.exploded" in r.output and "Traceback" not in r.output


def test_follow_replays_then_streams_live_and_resumes_after_a_cut(server: LiveServer) -> None:
    record(server, "node.up", node="peer0")
    svc = server.app[REGISTRY].events
    svc.config = type(svc.config)(**{**svc.config.__dict__, "queue_size": 10, "poll_interval_s": 0.05})
    got: list[dict[str, Any]] = []
    done = threading.Event()

    def reader() -> None:
        with RegistryClient(server.url) as client:
            for e in follow(client, after=0):
                got.append(e)
                if len(got) == 31:
                    break
        done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    for i in range(30):  # more than a stream's queue: the server may cut it; the client resumes
        record(server, "node.down", node=f"peer{i}")
    assert done.wait(60), f"follow stopped after {len(got)} events"
    assert [e["payload"]["node"] for e in got] == ["peer0"] + [f"peer{i}" for i in range(30)]
    assert [e["id"] for e in got] == sorted({e["id"] for e in got})  # none twice, none skipped
