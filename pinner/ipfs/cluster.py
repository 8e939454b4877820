"""IPFS Cluster REST API client: we ask the cluster for a replication factor and track what its peers report.

A cluster replicates by itself, so it is a `PinBackend` only: `POST /pins/{cid}` with
`replication-min/max`, `GET /pins/{cid}` (one status per cluster peer, aggregated here), `DELETE`,
`GET /id`, `GET /peers`, and the pinset from `GET /allocations`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pinner.cids import decode_cid, normalize_cid
from pinner.ipfs.errors import NodeBadResponseError, NodeError
from pinner.ipfs.http import EndpointClient, HttpEndpoint, HttpTimeouts, NodeAuth, json_dict, node_cid
from pinner.ipfs.protocol import NodeInfo, PinState, PinStatus, ProgressCallback
from pinner.ipfs.waiting import wait_for_pin

# Cluster tracker statuses (api.TrackerStatus strings) as the remote-pin vocabulary; "remote" and
# "sharded" mean the peer is not allocated the pin and do not count either way.
_TRACKER_STATES: Mapping[str, PinState | None] = {
    "pinned": PinState.PINNED,
    "pinning": PinState.PINNING,
    "pin_queued": PinState.QUEUED,
    "queued": PinState.QUEUED,
    "pin_error": PinState.FAILED,
    "cluster_error": PinState.FAILED,
    "error": PinState.FAILED,
    "unexpectedly_unpinned": PinState.FAILED,
    "unpinned": PinState.UNPINNED,
    "unpinning": PinState.UNPINNED,
    "unpin_queued": PinState.UNPINNED,
    "unpin_error": PinState.UNPINNED,
    "remote": None,
    "sharded": None,
    "undefined": None,
}


@dataclass(frozen=True)
class ClusterConfig:
    """Replication asked of the cluster (None: the cluster's own defaults) and how long we wait for it."""

    timeouts: HttpTimeouts = field(default_factory=HttpTimeouts)
    replication_min: int | None = None
    replication_max: int | None = None
    poll_interval: float = 2.0
    pin_no_progress_timeout: float = 300.0

    def __post_init__(self) -> None:
        lo, hi = self.replication_min, self.replication_max
        if lo is not None and hi is not None and hi != -1 and lo > hi:
            raise ValueError(f"replication_min {lo} exceeds replication_max {hi}")
        if self.poll_interval <= 0 or self.pin_no_progress_timeout <= 0:
            raise ValueError("poll_interval and pin_no_progress_timeout must be positive")


def aggregate(cid: str, peer_map: Mapping[str, Any]) -> PinStatus:
    """One status from the per-peer ones: pinned only when no allocated peer is still working or failed."""
    peers: dict[str, PinState] = {}
    errors: list[str] = []
    for peer, info in peer_map.items():
        raw = info.get("status") if isinstance(info, dict) else None
        state = _TRACKER_STATES.get(str(raw), PinState.FAILED)  # an unknown status is not success
        if state is None:
            continue
        peers[str(peer)] = state
        if state is PinState.FAILED:
            errors.append(f"{info.get('peername') or peer}: {info.get('error') or raw}")
    states = set(peers.values())
    if not states or states == {PinState.UNPINNED}:
        overall = PinState.UNPINNED
    elif PinState.PINNING in states:
        overall = PinState.PINNING
    elif PinState.QUEUED in states:
        overall = PinState.QUEUED
    elif PinState.FAILED in states:
        overall = PinState.FAILED
    else:
        overall = PinState.PINNED
    return PinStatus(cid=cid, state=overall, error="; ".join(errors) or None, peers=peers)


class ClusterClient(EndpointClient):
    """An IPFS Cluster peer's REST API. Implements `pinner.ipfs.protocol.PinBackend`."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        auth: NodeAuth | None = None,
        config: ClusterConfig = ClusterConfig(),
    ) -> None:
        self.config = config
        self._http = HttpEndpoint(url, session=session, auth=auth, timeouts=config.timeouts)

    async def _json_values(self, path: str, params: Mapping[str, str] | None = None) -> AsyncIterator[Any]:
        """Cluster >= 1.0 streams NDJSON; older versions send one JSON array. Accept both."""
        async with self._http.request("GET", path, params=params, stream=True) as resp:
            async for value in self._http.iter_json_lines(resp):
                if isinstance(value, list):
                    for item in value:
                        yield item
                else:
                    yield value

    async def info(self) -> NodeInfo:
        data = json_dict(await self._json("GET", "/id"), self._http, "/id")
        if data.get("error"):
            raise self._http.error(NodeError, f"cluster peer {self.url} reports: {data['error']}")
        ipfs = data.get("ipfs") if isinstance(data.get("ipfs"), dict) else {}
        return NodeInfo(
            url=self.url,
            version=str(data.get("version", "")),
            peer_id=str(data["id"]) if "id" in data else None,
            agent=f"ipfs-cluster/{data.get('version', '?')}",
            addresses=tuple(str(a) for a in (ipfs or {}).get("addresses") or ()),
        )

    async def peers(self) -> list[NodeInfo]:
        """The cluster's peers (`GET /peers`), each with its IPFS daemon's addresses."""
        out = []
        async for peer in self._json_values("/peers"):
            item = json_dict(peer, self._http, "/peers item")
            ipfs = item.get("ipfs") if isinstance(item.get("ipfs"), dict) else {}
            out.append(
                NodeInfo(
                    url=self.url,
                    version=str(item.get("version", "")),
                    peer_id=str(item.get("id", "")) or None,
                    agent=str(item.get("peername", "")) or None,
                    addresses=tuple(str(a) for a in (ipfs or {}).get("addresses") or ()),
                )
            )
        return out

    async def free_space(self) -> int | None:
        return None  # the cluster's allocator weighs free space itself

    async def request_pin(self, cid: str, *, name: str | None = None, origins: tuple[str, ...] = ()) -> None:
        """Ask the cluster to track `cid`, without waiting (`POST /pins/{cid}`)."""
        decode_cid(cid)
        params: dict[str, str] = {}
        if self.config.replication_min is not None:
            params["replication-min"] = str(self.config.replication_min)
        if self.config.replication_max is not None:
            params["replication-max"] = str(self.config.replication_max)
        if name:
            params["name"] = name
        if origins:
            params["origins"] = ",".join(origins)
        data = await self._json("POST", f"/pins/{cid}", params=params, cid=cid, ok=(200, 202))
        answered = json_dict(data, self._http, "POST /pins", cid=cid).get("cid")
        if isinstance(answered, dict):  # cluster < 1.0 wrote CIDs as {"/": "..."}
            answered = answered.get("/")
        if node_cid(answered, self._http, cid=cid) != normalize_cid(cid):
            raise self._http.error(NodeBadResponseError, f"{self.url} acknowledged another CID", cid=cid)

    async def pin(
        self,
        cid: str,
        *,
        name: str | None = None,
        origins: tuple[str, ...] = (),
        on_progress: ProgressCallback | None = None,
    ) -> PinStatus:
        """Request the pin, then poll until `replication_min` peers (at least one) report it pinned."""
        await self.request_pin(cid, name=name, origins=origins)
        return await wait_for_pin(
            lambda: self.pin_status(cid),
            cid=cid,
            node_url=self.url,
            poll_interval=self.config.poll_interval,
            no_progress_timeout=self.config.pin_no_progress_timeout,
            min_replicas=max(self.config.replication_min or 1, 1),
            on_progress=on_progress,
        )

    async def pin_status(self, cid: str) -> PinStatus:
        decode_cid(cid)
        try:
            data = await self._json("GET", f"/pins/{cid}", cid=cid)
        except NodeError as exc:
            if exc.status == 404:
                return PinStatus(cid=normalize_cid(cid), state=PinState.UNPINNED)
            raise
        peer_map = json_dict(data, self._http, "GET /pins/{cid}", cid=cid).get("peer_map") or {}
        if not isinstance(peer_map, dict):
            raise self._http.error(NodeBadResponseError, f"{self.url}: peer_map is not an object", cid=cid)
        return aggregate(normalize_cid(cid), peer_map)

    async def list_pins(self) -> AsyncIterator[str]:
        """The cluster pinset (`GET /allocations?filter=pin`): what it promises to keep."""
        async for pin in self._json_values("/allocations", {"filter": "pin"}):
            raw = json_dict(pin, self._http, "/allocations item").get("cid")
            yield node_cid(raw.get("/") if isinstance(raw, dict) else raw, self._http)

    async def unpin(self, cid: str) -> None:
        decode_cid(cid)
        try:
            async with self._http.request("DELETE", f"/pins/{cid}", cid=cid, ok=(200, 202, 204)):
                pass
        except NodeError as exc:
            if exc.status != 404:
                raise
