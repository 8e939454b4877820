"""#15 items 1 and 3 through the API: a publish writes its events in its own transaction (a refused one writes
none), the feed pages by id with type and namespace filters, bad filters are 400s naming the value, and the
SSE stream replays from Last-Event-ID, then follows live events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from registry.api.auth import WEB_TOKEN_COOKIE
from registry.api.keys import REGISTRY, SESSIONS
from registry.app.daemon import build_app
from registry.db.events import Event
from registry.events import store
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARD = ("model-00001-of-00001.safetensors", b"0123456789abcdef")


async def feed(reg: Registry, query: str = "", token: str | None = None) -> dict[str, Any]:
    headers = helpers.bearer(token) if token else {}
    r = await reg.client.get(f"/v1/events{query}", headers=headers)
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def test_a_publish_writes_its_events_and_the_feed_pages_them(reg: Registry) -> None:
    out = await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [SHARD])
    cid = out["cid"]
    body = await feed(reg)
    types = [(e["type"], e["model"], e["pack"]) for e in body["items"]]
    assert types[:3] == [
        ("pack.published", "acme/tiny", cid),
        ("pack.available", "acme/tiny", cid),
        ("pointer.moved", "acme/tiny", cid),
    ], types
    ids = [e["id"] for e in body["items"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    moved = body["items"][2]
    assert moved["payload"] | {"reason": None} == {
        "tag": "latest", "from": None, "to": cid, "by": "alice", "reason": None,
    }  # fmt: skip
    assert body["items"][1]["payload"]["from"] == "received" and body["items"][1]["namespace"] == "acme"

    first = await feed(reg, "?limit=1")
    rest = await feed(reg, f"?after={first['next_after']}")
    assert [e["id"] for e in first["items"] + rest["items"]] == ids
    assert (await feed(reg, f"?after={ids[-1]}"))["items"] == []
    only = await feed(reg, "?type=pointer.moved,pack.available")
    assert {e["type"] for e in only["items"]} == {"pointer.moved", "pack.available"}
    assert [e["type"] for e in (await feed(reg, "?type=pack.published&type=pointer.moved"))["items"]] == [
        "pack.published",
        "pointer.moved",
    ]
    assert (await feed(reg, "?namespace=other"))["items"] == []


async def test_a_refused_publish_writes_no_event(reg: Registry) -> None:
    before = await _count(reg)
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": helpers.manifest([SHARD])})
    assert r.status >= 400  # the shard was never uploaded
    assert await _count(reg) == before


async def _count(reg: Registry) -> int:
    async with reg.client.app[SESSIONS]() as s:
        return int((await s.execute(select(func.count()).select_from(Event))).scalar_one())


async def test_bad_filters_are_400s_naming_the_value(reg: Registry) -> None:
    for query, words in (
        ("?type=pack.exploded", "pack.exploded"),
        ("?type=", "event type"),
        ("?type=pack.curated,,pointer.moved", "event type"),
        ("?after=-1", "-1"),
        ("?after=abc", "abc"),
        ("?after=99999999999999999999", "9999"),
        ("?namespace=Bad%20NS", "namespace"),
        ("?limit=0", "limit"),
        ("?type=" + "x" * 5000, "xxxx"),
    ):
        r = await reg.client.get(f"/v1/events{query}")
        err = (await r.json())["error"]
        assert r.status == 400 and words in err["message"], (query, err)
        assert len(err["message"]) < 600, query
    r = await reg.client.get("/v1/events/stream", headers={"Last-Event-ID": "nope"})
    assert r.status == 400 and "Last-Event-ID" in (await r.json())["error"]["message"]
    r = await reg.client.get("/v1/events/stream", headers={"Last-Event-ID": "999999"})  # in the future
    assert r.status == 400 and "after the newest event" in (await r.json())["error"]["message"]


async def _frames(resp: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` event frames of an SSE response (comments and retry lines skipped)."""
    out: list[dict[str, Any]] = []
    frame: dict[str, str] = {}
    while len(out) < count:
        line = (await asyncio.wait_for(resp.content.readline(), 30)).decode().rstrip("\n")
        if line == "":
            if "data" in frame:
                out.append({"id": int(frame["id"]), "event": frame["event"], **json.loads(frame["data"])})
            frame = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            frame[key] = value
    return out


async def test_the_stream_replays_from_last_event_id_then_follows(reg: Registry) -> None:
    await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [SHARD])
    ids = [e["id"] for e in (await feed(reg))["items"]]
    resp = await reg.client.get("/v1/events/stream", headers={"Last-Event-ID": str(ids[0])})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    replay = await _frames(resp, len(ids) - 1)
    assert [f["id"] for f in replay] == ids[1:] and replay[0]["event"] == replay[0]["type"]
    svc = reg.client.app[REGISTRY].events
    assert svc.subscribers == 1
    other = ("model-00001-of-00001.safetensors", b"another shard")
    out = await helpers.upload_and_publish(reg.client, reg.alice, "acme/second", [other])
    live = await _frames(resp, 3)
    assert [f["type"] for f in live] == ["pack.published", "pack.available", "pointer.moved"]
    assert all(f["pack"] == out["cid"] for f in live) and live[0]["id"] > ids[-1]
    resp.close()


async def test_the_stream_filters_and_starts_at_now_without_a_cursor(reg: Registry) -> None:
    await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [SHARD])
    resp = await reg.client.get("/v1/events/stream?type=pointer.moved")
    assert resp.status == 200
    await helpers.upload_and_publish(reg.client, reg.alice, "acme/second", [(SHARD[0], b"more bytes")])
    (only,) = await _frames(resp, 1)
    assert only["type"] == "pointer.moved" and only["model"] == "acme/second"  # nothing replayed
    resp.close()


async def test_with_read_requires_token_the_stream_takes_the_web_pages_cookie(settings: Settings) -> None:
    settings = settings.model_copy(
        update={
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
            "server": settings.server.model_copy(update={"read_requires_token": True}),
        }
    )
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        tok = await helpers.token(app, "alice", ["acme"])
        assert (await client.get("/v1/events/stream")).status == 401
        cookie = {"Cookie": f"{WEB_TOKEN_COOKIE}={tok}"}
        assert (await client.get("/v1/events", headers=cookie)).status == 401  # the JSON API wants Bearer
        assert (await client.get("/v1/events", headers=helpers.bearer(tok))).status == 200
        bad = {"Cookie": f"{WEB_TOKEN_COOKIE}=mpk_not-a-token"}
        assert (await client.get("/v1/events/stream", headers=bad)).status == 401
        resp = await client.get("/v1/events/stream", headers=cookie)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        resp.close()


async def test_a_client_that_never_reads_is_dropped(settings: Settings) -> None:
    settings = settings.model_copy(
        update={
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
            "events": settings.events.model_copy(update={"heartbeat_s": 0.2, "subscriber_queue": 100_000}),
        }
    )
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        svc = app[REGISTRY].events
        host, port = client.server.host, client.server.port
        _reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /v1/events/stream?after=0 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        await _until(lambda: svc.subscribers == 1)
        pad = {f"k{i}": "x" * 1000 for i in range(4)}  # ~4 KiB a frame: 24 MiB overflow the socket buffers
        for _ in range(12):
            async with app[SESSIONS]() as s, s.begin():
                for _ in range(500):
                    await store.record(s, "node.up", payload=pad)
        await _until(lambda: svc.subscribers == 0)  # its writes stalled (its queue is large): dropped
        writer.close()


async def _until(cond: Any, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
