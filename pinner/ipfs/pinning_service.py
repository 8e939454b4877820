"""Pinning Service API v1.0.0 client (ipfs/pinning-services-api-spec): remote pinning with a bearer token.

A pin is a *request* with an id: `POST /pins` creates one, `GET /pins?cid=` finds them,
`GET`/`DELETE /pins/{requestid}` track or cancel one. Statuses: queued, pinning, pinned, failed.
The service fetches the blocks itself from `origins`; it may name `delegates` for the block holder
to connect to, which `PinStatus.delegates` carries back to the replication service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pinner.cids import decode_cid, normalize_cid
from pinner.ipfs.errors import NodeBadResponseError, NodeError
from pinner.ipfs.http import BearerAuth, EndpointClient, HttpEndpoint, HttpTimeouts, json_dict, node_cid
from pinner.ipfs.protocol import NodeInfo, PinState, PinStatus, ProgressCallback
from pinner.ipfs.waiting import wait_for_pin

SPEC_VERSION = "1.0.0"
ALL_STATUSES = "queued,pinning,pinned,failed"  # GET /pins lists only "pinned" unless told otherwise
_STATES = {s.value: s for s in (PinState.QUEUED, PinState.PINNING, PinState.PINNED, PinState.FAILED)}


@dataclass(frozen=True)
class PinningServiceConfig:
    timeouts: HttpTimeouts = field(default_factory=HttpTimeouts)
    poll_interval: float = 5.0
    pin_no_progress_timeout: float = 600.0
    page_size: int = 1000  # the spec's maximum `limit`

    def __post_init__(self) -> None:
        if self.poll_interval <= 0 or self.pin_no_progress_timeout <= 0:
            raise ValueError("poll_interval and pin_no_progress_timeout must be positive")
        if not 1 <= self.page_size <= 1000:
            raise ValueError(f"page_size must be within 1..1000, got {self.page_size}")


class PinningServiceClient(EndpointClient):
    """A remote pinning service. Implements `pinner.ipfs.protocol.PinBackend`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        config: PinningServiceConfig = PinningServiceConfig(),
    ) -> None:
        self.config = config
        self._http = HttpEndpoint(url, session=session, auth=BearerAuth(token), timeouts=config.timeouts)

    def _status(self, value: Any, *, cid: str | None = None) -> PinStatus:
        """A spec PinStatus object as ours; anything off-spec is the service's fault."""
        data = json_dict(value, self._http, "PinStatus", cid=cid)
        pin = json_dict(data.get("pin"), self._http, "PinStatus.pin", cid=cid)
        state = _STATES.get(str(data.get("status")))
        request_id = data.get("requestid")
        if state is None or not isinstance(request_id, str) or not request_id:
            raise self._http.error(
                NodeBadResponseError, f"{self.url}: malformed PinStatus {value!r:.120}", cid=cid
            )
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        return PinStatus(
            cid=node_cid(pin.get("cid"), self._http, cid=cid),
            state=state,
            error=str(info.get("status_details")) if state is PinState.FAILED and info else None,
            request_id=request_id,
            delegates=tuple(str(d) for d in data.get("delegates") or ()),
        )

    async def _page(self, params: dict[str, str], *, cid: str | None = None) -> list[PinStatus]:
        data = json_dict(await self._json("GET", "/pins", params=params, cid=cid), self._http, "PinResults")
        results = data.get("results")
        if not isinstance(results, list) or not isinstance(data.get("count"), int):
            raise self._http.error(
                NodeBadResponseError, f"{self.url}: PinResults lacks count/results", cid=cid
            )
        return [self._status(r, cid=cid) for r in results]

    async def requests_for(self, cid: str) -> list[PinStatus]:
        """Every pin request for `cid`, in any status."""
        decode_cid(cid)
        return await self._page(
            {"cid": cid, "status": ALL_STATUSES, "limit": str(self.config.page_size)}, cid=cid
        )

    async def info(self) -> NodeInfo:
        await self._page({"limit": "1"})  # proves the URL and the token
        return NodeInfo(url=self.url, version=f"pinning-service-api/{SPEC_VERSION}")

    async def free_space(self) -> int | None:
        return None

    async def request_pin(
        self, cid: str, *, name: str | None = None, origins: tuple[str, ...] = ()
    ) -> PinStatus:
        """`POST /pins`, or the live request already there for `cid` (so retries never duplicate)."""
        for existing in await self.requests_for(cid):
            if existing.state is not PinState.FAILED:
                return existing
        body: dict[str, Any] = {"cid": cid}
        if name:
            body["name"] = name[:255]
        if origins:
            body["origins"] = list(origins)
        data = await self._json("POST", "/pins", json_body=body, cid=cid, ok=(200, 201, 202))
        return self._status(data, cid=cid)

    async def pin(
        self,
        cid: str,
        *,
        name: str | None = None,
        origins: tuple[str, ...] = (),
        on_progress: ProgressCallback | None = None,
    ) -> PinStatus:
        request = await self.request_pin(cid, name=name, origins=origins)
        request_id = request.request_id or ""
        return await wait_for_pin(
            lambda: self.request_status(request_id, cid=cid),
            cid=cid,
            node_url=self.url,
            poll_interval=self.config.poll_interval,
            no_progress_timeout=self.config.pin_no_progress_timeout,
            on_progress=on_progress,
        )

    async def request_status(self, request_id: str, *, cid: str | None = None) -> PinStatus:
        return self._status(await self._json("GET", f"/pins/{request_id}", cid=cid), cid=cid)

    async def pin_status(self, cid: str) -> PinStatus:
        """The most telling request for `cid`: pinned over in-flight over failed; UNPINNED if none."""
        found = await self.requests_for(cid)
        rank = [PinState.PINNED, PinState.PINNING, PinState.QUEUED, PinState.FAILED]
        for state in rank:
            for status in found:
                if status.state is state:
                    return status
        return PinStatus(cid=normalize_cid(cid), state=PinState.UNPINNED)

    async def list_pins(self) -> AsyncIterator[str]:
        """Pinned CIDs, paging backwards in time with `before=<oldest created>` as the spec suggests."""
        params = {"status": "pinned", "limit": str(self.config.page_size)}
        seen: set[str] = set()
        while True:
            data = json_dict(await self._json("GET", "/pins", params=params), self._http, "PinResults")
            results = data.get("results")
            if not isinstance(results, list):
                raise self._http.error(NodeBadResponseError, f"{self.url}: PinResults lacks results")
            for item in results:
                cid = self._status(item).cid
                if cid not in seen:
                    seen.add(cid)
                    yield cid
            created = [r.get("created") for r in results if isinstance(r, dict)]
            oldest = min((c for c in created if isinstance(c, str)), default=None)
            if len(results) < self.config.page_size or oldest is None or oldest == params.get("before"):
                return
            params = {**params, "before": oldest}

    async def unpin(self, cid: str) -> None:
        """Delete every request for `cid`; one already gone (404) is fine."""
        for request in await self.requests_for(cid):
            try:
                async with self._http.request(
                    "DELETE", f"/pins/{request.request_id}", cid=cid, ok=(200, 202, 204)
                ):
                    pass
            except NodeError as exc:
                if exc.status != 404:
                    raise
