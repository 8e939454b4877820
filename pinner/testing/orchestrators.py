"""Fake servers that follow the IPFS Cluster REST API and the Pinning Service API v1.0.0 specs.

No real Cluster or pinning service can be installed here; these keep the shapes, status names and
codes of the specs, and move each pin through its states one step per status query so that clients
must poll.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web
from multiformats import CID

CLUSTER_STEPS = ("pin_queued", "pinning", "pinned")
PSA_STEPS = ("queued", "pinning", "pinned")


def _valid_cid(text: str) -> bool:
    try:
        CID.decode(text)
    except (ValueError, KeyError):
        return False
    return True


@dataclass
class FakeCluster:
    """Three cluster peers; a pin is allocated to `replication_max` of them (all when -1 or unset)."""

    peer_ids: tuple[str, ...] = ("12D3KooWpeerA", "12D3KooWpeerB", "12D3KooWpeerC")
    fail_peer: str | None = None  # this peer reports pin_error instead of progressing
    stuck: bool = False  # pins stay pin_queued forever
    pins: dict[str, dict[str, object]] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/id", self.id)
        app.router.add_get("/peers", self.peers)
        app.router.add_post("/pins/{cid}", self.add)
        app.router.add_get("/pins/{cid}", self.status)
        app.router.add_delete("/pins/{cid}", self.delete)
        app.router.add_get("/allocations", self.allocations)
        return app

    def _peer(self, pid: str) -> dict[str, object]:
        return {
            "id": pid,
            "peername": pid[-5:],
            "version": "1.1.2",
            "ipfs": {"id": pid + "ipfs", "addresses": [f"/ip4/127.0.0.1/tcp/4001/p2p/{pid}ipfs"]},
            "error": "",
        }

    async def id(self, request: web.Request) -> web.Response:
        return web.json_response(self._peer(self.peer_ids[0]))

    async def peers(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for pid in self.peer_ids:  # cluster >= 1.0 streams one JSON object per line
            await resp.write(json.dumps(self._peer(pid)).encode() + b"\n")
        await resp.write_eof()
        return resp

    async def add(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        self.requests.append(("POST", cid, dict(request.query)))
        if not _valid_cid(cid):
            return web.json_response({"code": 400, "message": f"error decoding Cid: {cid}"}, status=400)
        rmax = int(request.query.get("replication-max", "-1"))
        count = len(self.peer_ids) if rmax == -1 else min(rmax, len(self.peer_ids))
        pin = {
            "cid": cid,
            "name": request.query.get("name", ""),
            "allocations": list(self.peer_ids[:count]),
            "replication_factor_min": int(request.query.get("replication-min", "-1")),
            "replication_factor_max": rmax,
            "origins": [o for o in request.query.get("origins", "").split(",") if o],
        }
        self.pins[cid] = pin
        self.steps.setdefault(cid, 0)
        return web.json_response(pin)

    async def status(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        pin = self.pins.get(cid)
        step = self.steps.get(cid, 0)
        if pin is not None and not self.stuck:
            self.steps[cid] = min(step + 1, len(CLUSTER_STEPS) - 1)
        peer_map = {}
        for pid in self.peer_ids:
            if pin is None:
                status, error = "unpinned", ""
            elif pid not in pin["allocations"]:  # type: ignore[operator]
                status, error = "remote", ""
            elif pid == self.fail_peer and step > 0:
                status, error = "pin_error", "context deadline exceeded"
            else:
                status, error = CLUSTER_STEPS[step], ""
            peer_map[pid] = {
                "peername": pid[-5:],
                "ipfs_peer_id": pid + "ipfs",
                "status": status,
                "timestamp": "2026-11-25T08:00:00Z",
                "error": error,
                "attempt_count": 0,
                "priority_pin": False,
            }
        return web.json_response({"cid": cid, "name": "", "allocations": [], "peer_map": peer_map})

    async def delete(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if self.pins.pop(cid, None) is None:
            return web.json_response(
                {"code": 404, "message": "cid is not part of the global state"}, status=404
            )
        self.steps.pop(cid, None)
        return web.json_response({"cid": cid})

    async def allocations(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for pin in self.pins.values():
            await resp.write(json.dumps(pin).encode() + b"\n")
        await resp.write_eof()
        return resp


@dataclass
class FakePinningService:
    """A Pinning Service API v1.0.0 endpoint with one valid bearer token."""

    token: str = "secret-token"
    fail: bool = False  # every pin ends "failed"
    stuck: bool = False  # pins stay "queued"
    pins: dict[str, dict[str, object]] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    posts: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _clock: datetime = field(default_factory=lambda: datetime(2026, 11, 25, tzinfo=UTC))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])
        app.router.add_get("/pins", self.list)
        app.router.add_post("/pins", self.add)
        app.router.add_get("/pins/{requestid}", self.get)
        app.router.add_delete("/pins/{requestid}", self.delete)
        return app

    @staticmethod
    def failure(status: int, reason: str, details: str) -> web.Response:
        return web.json_response({"error": {"reason": reason, "details": details}}, status=status)

    @web.middleware
    async def auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.failure(401, "UNAUTHORIZED", "Access token is missing or invalid")
        return await handler(request)

    def _view(self, rid: str, *, advance: bool) -> dict[str, object]:
        pin = self.pins[rid]
        step = self.steps[rid]
        if advance and not self.stuck:
            self.steps[rid] = min(step + 1, len(PSA_STEPS) - 1)
        status = "failed" if self.fail and step > 0 else PSA_STEPS[step]
        return {
            **pin,
            "status": status,
            "info": {"status_details": "fetch timed out"} if status == "failed" else {},
        }

    async def add(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict) or not _valid_cid(str(body.get("cid", ""))):
            return self.failure(400, "BAD_REQUEST", f"invalid cid in {body!r}")
        self.posts += 1
        rid = f"req-{next(self._ids)}"
        self._clock += timedelta(seconds=1)
        self.pins[rid] = {
            "requestid": rid,
            "created": self._clock.isoformat().replace("+00:00", "Z"),
            "pin": {k: body[k] for k in ("cid", "name", "origins", "meta") if k in body},
            "delegates": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWdelegate"],
        }
        self.steps[rid] = 0
        return web.json_response(self._view(rid, advance=False), status=202)

    async def list(self, request: web.Request) -> web.Response:
        cids = set(filter(None, request.query.get("cid", "").split(",")))
        statuses = set(request.query.get("status", "pinned").split(","))
        limit = int(request.query.get("limit", "10"))
        before = request.query.get("before")
        views = [self._view(rid, advance=False) for rid in self.pins]
        hits = [
            v
            for v in views
            if (not cids or v["pin"]["cid"] in cids)  # type: ignore[index]
            and v["status"] in statuses
            and (before is None or str(v["created"]) < before)
        ]
        hits.sort(key=lambda v: str(v["created"]), reverse=True)
        return web.json_response({"count": len(hits), "results": hits[:limit]})

    async def get(self, request: web.Request) -> web.Response:
        rid = request.match_info["requestid"]
        if rid not in self.pins:
            return self.failure(404, "NOT_FOUND", f"no pin request {rid}")
        return web.json_response(self._view(rid, advance=True))

    async def delete(self, request: web.Request) -> web.Response:
        rid = request.match_info["requestid"]
        if self.pins.pop(rid, None) is None:
            return self.failure(404, "NOT_FOUND", f"no pin request {rid}")
        return web.Response(status=202)
