"""A live registry for the Hugging Face client tests: publishing over HTTP, curating by hand, counting requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aiohttp import web
from aiohttp.typedefs import Handler

from registry.api.keys import REGISTRY, SESSIONS
from registry.db.listings import find_listing
from registry.db.models import PackState
from registry.names import ModelRef
from registry.packs.pointers import move_pointer
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer


@dataclass
class Seen:
    """The requests the server answered: (method, path, status, Range header)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    rows: list[tuple[str, str, int, str | None]] = field(default_factory=list)

    def mark(self) -> int:
        with self.lock:
            return len(self.rows)

    def since(self, mark: int) -> list[tuple[str, str, int, str | None]]:
        with self.lock:
            return list(self.rows[mark:])

    def gets(self, mark: int, part: str = "/resolve/") -> list[tuple[str, str, int, str | None]]:
        return [r for r in self.since(mark) if r[0] == "GET" and part in r[1]]


@contextmanager
def live(settings: Settings, **server: Any) -> Iterator[tuple[LiveServer, Seen]]:
    settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(update=server),
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
        }
    )
    seen = Seen()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        with seen.lock:
            seen.rows.append((request.method, request.path, resp.status, request.headers.get("Range")))
        return resp

    srv = LiveServer(settings)
    srv.app.middlewares.append(count)
    with srv:
        yield srv, seen


def token(srv: LiveServer, publisher: str = "alice", namespaces: list[str] | None = None, **kw: Any) -> str:
    return srv.run(helpers.token(srv.app, publisher, namespaces or ["acme"], **kw))


def publish_folder(srv: LiveServer, tok: str, name: str, folder: Path, **body: Any) -> dict[str, Any]:
    """Uploads every file the pack folder's manifest lists, then publishes it (``tag``, ``reason``...)."""
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    auth = helpers.bearer(tok)
    for entry in [*manifest["shards"], *(manifest.get("files") or [])]:
        data = (folder / entry["filename"]).read_bytes()
        r = requests.put(f"{srv.url}/v1/blobs/{entry['cid']}", data=data, headers=auth, timeout=60)
        assert r.status_code in (200, 201), r.text
    r = requests.post(
        f"{srv.url}/v1/models/{name}/packs", json={"manifest": manifest, **body}, headers=auth, timeout=60
    )
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()
    return out


def write_pack(
    folder: Path, name: str, shards: list[tuple[str, bytes]], files: list[tuple[str, bytes]]
) -> Path:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for n, data in [*shards, *files]:
        (folder / n).write_bytes(data)
    m = helpers.manifest(shards, model_name=name, files=[helpers.shard_entry(n, d) for n, d in files])
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def curate_by_hand(srv: LiveServer, name: str, cid: str) -> None:
    """What the gate does when it curates: the listing becomes ``curated`` and ``@curated`` points at it."""
    ns, model = name.split("/")
    ref = ModelRef(ns, model)

    async def go() -> None:
        async with srv.app[SESSIONS]() as s, s.begin():
            pack = await find_listing(s, cid, ref)
            pack.state = PackState.CURATED
            await move_pointer(s, pack.model_id, "curated", cid, actor="test", reason="curated by hand")
        srv.app[REGISTRY].pointers.forget_model(ref)

    srv.run(go())
