"""Kubo RPC (`/api/v0`) client: the calls the replication service makes on an IPFS node, bytes streamed.

Targets Kubo semantics and tolerates js-ipfs 0.66 (the test peers): CIDs are normalised (js-ipfs
prints CIDv1 in base58btc), numbers may arrive as strings, `routing/put` falls back to `dht/put`,
`offline=true` is not relied on (a node-side `timeout=` bounds calls that could wait on the network),
`block/put` is asked for `format=raw`, and multipart parts always carry a Content-Type.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pinner.cids import decode_cid, normalize_cid
from pinner.ipfs.errors import (
    NodeBadResponseError,
    NodeError,
    NodeNotSupportedError,
    NotPinnedError,
    PinStalledError,
)
from pinner.ipfs.http import (
    EndpointClient,
    HttpEndpoint,
    HttpTimeouts,
    NodeAuth,
    json_dict,
    node_cid,
    stream_part,
    verify_node_block,
)
from pinner.ipfs.protocol import BlockStat, NodeInfo, PinState, PinStatus, ProgressCallback, RepoStat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KuboConfig:
    """Budgets for one Kubo node. Seconds unless named otherwise."""

    timeouts: HttpTimeouts = field(default_factory=HttpTimeouts)
    node_timeout: float = 30.0  # sent as `timeout=` so a missing block fails on the node, not hangs
    pin_no_progress_timeout: float = 120.0  # abort a pin/add whose fetched-block count stops growing
    max_block_size: int = 4 * 1024 * 1024  # bitswap refuses blocks over 2 MiB; allow headroom
    stream_chunk_size: int = 256 * 1024

    def __post_init__(self) -> None:
        if self.node_timeout <= 0 or self.pin_no_progress_timeout <= 0:
            raise ValueError("node_timeout and pin_no_progress_timeout must be positive")
        if self.max_block_size <= 0 or self.stream_chunk_size <= 0:
            raise ValueError("max_block_size and stream_chunk_size must be positive")


@dataclass(frozen=True)
class AddResult:
    cid: str
    size: int
    name: str


def _int(value: Any, endpoint: HttpEndpoint, what: str) -> int:
    """Kubo sends numbers, js-ipfs sometimes numeric strings; anything else is garbage."""
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise endpoint.error(
            NodeBadResponseError, f"{endpoint.url}: {what} is not a number: {value!r}"
        ) from exc


def _is_not_pinned(exc: NodeError) -> bool:
    return "not pinned" in (exc.node_message or "").lower()


class KuboClient(EndpointClient):
    """A Kubo RPC node. Implements `pinner.ipfs.protocol.IpfsNode`.

    Pass a shared `aiohttp.ClientSession` (the client never closes it), or none and call `close()`.
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        auth: NodeAuth | None = None,
        config: KuboConfig = KuboConfig(),
    ) -> None:
        self.config = config
        self._http = HttpEndpoint(url, session=session, auth=auth, timeouts=config.timeouts)

    # -- plumbing -------------------------------------------------------------------------------

    def _params(self, *pairs: tuple[str, str], arg: str | None = None) -> list[tuple[str, str]]:
        params = [("arg", arg)] if arg is not None else []
        return [*params, *pairs, ("cid-base", "base32")]

    def _node_timeout(self) -> tuple[str, str]:
        return ("timeout", f"{self.config.node_timeout:g}s")

    async def _call(self, cmd: str, params: list[tuple[str, str]], *, cid: str | None = None) -> Any:
        async with self._http.request("POST", f"/api/v0/{cmd}", params=params, cid=cid) as resp:
            return await self._http.read_json(resp, cid=cid)

    async def _drain(self, resp: aiohttp.ClientResponse) -> None:
        async for _ in resp.content.iter_chunked(self.config.stream_chunk_size):
            pass

    # -- identity and health --------------------------------------------------------------------

    async def id(self) -> NodeInfo:
        data = json_dict(await self._call("id", []), self._http, "id")
        return NodeInfo(
            url=self.url,
            version=str(data.get("AgentVersion", "")),
            peer_id=str(data["ID"]) if "ID" in data else None,
            agent=str(data.get("AgentVersion", "")) or None,
            addresses=tuple(str(a) for a in data.get("Addresses") or ()),
        )

    async def version(self) -> str:
        data = json_dict(await self._call("version", []), self._http, "version")
        if not isinstance(data.get("Version"), str):
            raise self._http.error(NodeBadResponseError, f"{self.url}: version answer lacks Version")
        return str(data["Version"])

    async def info(self) -> NodeInfo:
        ident = await self.id()
        return NodeInfo(
            url=self.url,
            version=await self.version(),
            peer_id=ident.peer_id,
            agent=ident.agent,
            addresses=ident.addresses,
        )

    async def repo_stat(self) -> RepoStat:
        data = json_dict(await self._call("repo/stat", [("size-only", "true")]), self._http, "repo/stat")
        return RepoStat(
            repo_size=_int(data.get("RepoSize"), self._http, "RepoSize"),
            storage_max=_int(data.get("StorageMax"), self._http, "StorageMax"),
            num_objects=_int(data.get("NumObjects", 0), self._http, "NumObjects"),
        )

    async def free_space(self) -> int | None:
        return (await self.repo_stat()).free_bytes

    async def swarm_connect(self, multiaddr: str) -> None:
        await self._call("swarm/connect", [("arg", multiaddr)])

    # -- moving bytes in and out ----------------------------------------------------------------

    async def add(
        self,
        body: AsyncIterable[bytes],
        *,
        filename: str = "file",
        cid_version: int = 1,
        raw_leaves: bool | None = None,
        chunker: str | None = None,
        pin: bool = True,
    ) -> AddResult:
        """`ipfs add` one file streamed from `body`; returns the root CID."""
        params = self._params(("cid-version", str(cid_version)), ("pin", str(pin).lower()))
        if raw_leaves is not None:
            params.append(("raw-leaves", str(raw_leaves).lower()))
        if chunker is not None:
            params.append(("chunker", chunker))
        last: dict[str, Any] | None = None
        async with self._http.request(
            "POST", "/api/v0/add", params=params, data=stream_part(body, filename=filename), stream=True
        ) as resp:
            async for line in self._http.iter_json_lines(resp):
                if isinstance(line, dict) and "Hash" in line:
                    last = line
        if last is None:
            raise self._http.error(NodeBadResponseError, f"{self.url}: add answered without a Hash")
        return AddResult(
            cid=node_cid(last["Hash"], self._http),
            size=_int(last.get("Size", 0), self._http, "Size"),
            name=str(last.get("Name", "")),
        )

    async def import_car(self, car: AsyncIterable[bytes], *, pin_roots: bool = True) -> list[str]:
        params = self._params(("pin-roots", str(pin_roots).lower()))
        roots: list[str] = []
        async with self._http.request(
            "POST", "/api/v0/dag/import", params=params, data=stream_part(car, filename="car"), stream=True
        ) as resp:
            async for line in self._http.iter_json_lines(resp):
                root = line.get("Root") if isinstance(line, dict) else None
                if not isinstance(root, dict):
                    continue  # a Stats line
                cid_obj = root.get("Cid")
                cid = cid_obj.get("/") if isinstance(cid_obj, dict) else cid_obj
                if not isinstance(cid, str):
                    raise self._http.error(NodeBadResponseError, f"{self.url}: dag/import root without Cid")
                if root.get("PinErrorMsg"):
                    raise self._http.error(
                        NodeError,
                        f"{self.url} imported {cid} but could not pin it: {root['PinErrorMsg']}",
                        cid=cid,
                        node_message=str(root["PinErrorMsg"]),
                    )
                roots.append(node_cid(cid, self._http))
        if pin_roots and not roots:
            # Kubo reports a failure after the headers only in an HTTP trailer (X-Stream-Error), which
            # aiohttp does not expose: a pinning import that names no root did not succeed.
            raise self._http.error(NodeBadResponseError, f"{self.url}: dag/import reported no pinned root")
        return roots

    async def export_car(self, cid: str) -> AsyncIterator[bytes]:
        """`dag/export`: the DAG under `cid` as a CARv1 byte stream."""
        async with self._http.request(
            "POST", "/api/v0/dag/export", params=[("arg", cid)], stream=True, cid=cid
        ) as resp:
            async for chunk in resp.content.iter_chunked(self.config.stream_chunk_size):
                yield chunk

    async def cat(self, cid: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """A UnixFS file's bytes, streamed."""
        params = [("arg", cid), ("offset", str(offset))]
        if length is not None:
            params.append(("length", str(length)))
        async with self._http.request("POST", "/api/v0/cat", params=params, stream=True, cid=cid) as resp:
            async for chunk in resp.content.iter_chunked(self.config.stream_chunk_size):
                yield chunk

    async def put_block(self, data: bytes) -> str:
        """Store one raw block (`format=raw`: js-ipfs ignores `cid-codec`); returns its CID."""

        async def one() -> AsyncIterator[bytes]:
            yield data

        params = self._params(("format", "raw"), ("mhtype", "sha2-256"))
        async with self._http.request(
            "POST", "/api/v0/block/put", params=params, data=stream_part(one())
        ) as resp:
            out = json_dict(await self._http.read_json(resp), self._http, "block/put")
        return node_cid(out.get("Key"), self._http)

    async def get_block(self, cid: str) -> bytes:
        decode_cid(cid)
        params = [("arg", cid), self._node_timeout()]
        async with self._http.request("POST", "/api/v0/block/get", params=params, cid=cid) as resp:
            data = await self._http.read_limited(resp, self.config.max_block_size, cid=cid)
        verify_node_block(cid, data, node_url=self.url)
        return data

    async def stat_block(self, cid: str) -> BlockStat:
        decode_cid(cid)
        params = self._params(self._node_timeout(), arg=cid)
        data = json_dict(await self._call("block/stat", params, cid=cid), self._http, "block/stat", cid=cid)
        return BlockStat(
            cid=node_cid(data.get("Key", cid), self._http, cid=cid),
            size=_int(data.get("Size"), self._http, "Size"),
        )

    # -- pins ------------------------------------------------------------------------------------

    async def pin(
        self,
        cid: str,
        *,
        name: str | None = None,
        origins: tuple[str, ...] = (),
        on_progress: ProgressCallback | None = None,
    ) -> PinStatus:
        """`pin/add` with `progress=true`; `PinStalledError` once the fetched count stops growing.

        `name` labels the pin (Kubo >= 0.26; older nodes and js-ipfs ignore it).
        """
        decode_cid(cid)
        for addr in origins:
            try:
                await self.swarm_connect(addr)
            except NodeError as exc:  # the pin may still find the blocks elsewhere
                log.info("pin %s on %s: cannot connect origin %s: %s", cid, self.url, addr, exc)
        params = self._params(("recursive", "true"), ("progress", "true"), arg=cid)
        if name:
            params.append(("name", name))
        stall = self.config.pin_no_progress_timeout
        loop = asyncio.get_running_loop()
        pinned: list[str] = []
        best = -1
        try:
            # The watchdog covers the whole call (a node that never sends headers stalls too) and is
            # pushed back only when the fetched-block count grows: Kubo repeats the same count.
            async with asyncio.timeout(stall) as watchdog:
                async with self._http.request(
                    "POST", "/api/v0/pin/add", params=params, stream=True, read_timeout=None, cid=cid
                ) as resp:
                    async for line in self._http.iter_json_lines(resp, cid=cid):
                        if not isinstance(line, dict):
                            continue
                        progress = line.get("Progress")
                        if isinstance(progress, int) and progress > best:
                            best = progress
                            watchdog.reschedule(loop.time() + stall)
                            if on_progress is not None:
                                on_progress(progress)
                        if isinstance(line.get("Pins"), list):
                            pinned = [str(p) for p in line["Pins"]]
        except TimeoutError as exc:
            raise self._http.error(
                PinStalledError,
                f"pin of {cid} on {self.url} made no progress for {stall:g}s ({max(best, 0)} blocks fetched)",
                cid=cid,
            ) from exc
        if normalize_cid(cid) not in {node_cid(p, self._http, cid=cid) for p in pinned}:
            raise self._http.error(
                NodeBadResponseError, f"{self.url}: pin/add of {cid} did not confirm it", cid=cid
            )
        return PinStatus(cid=normalize_cid(cid), state=PinState.PINNED)

    async def pin_status(self, cid: str) -> PinStatus:
        return PinStatus(
            cid=normalize_cid(cid), state=PinState.PINNED if await self.is_pinned(cid) else PinState.UNPINNED
        )

    async def is_pinned(self, cid: str) -> bool:
        """Whether the node pins `cid` recursively (`pin/ls?arg=`)."""
        decode_cid(cid)
        return await self.all_pinned([cid])

    async def all_pinned(self, cids: Sequence[str]) -> bool:
        if not cids:
            return True
        wanted = {normalize_cid(c) for c in cids}
        params = self._params(
            ("type", "recursive"), self._node_timeout(), *(("arg", c) for c in sorted(wanted))
        )
        try:
            data = await self._call("pin/ls", params, cid=(first := min(wanted)))
        except NodeError as exc:
            if _is_not_pinned(exc):  # the node names the first one it does not pin and stops there
                return False
            raise
        keys = json_dict(data, self._http, "pin/ls", cid=first).get("Keys")
        return isinstance(keys, dict) and wanted <= {node_cid(k, self._http, cid=first) for k in keys}

    async def list_pins(self) -> AsyncIterator[str]:
        """Every recursive pin, streamed (`stream=true`: one line per pin, never one giant object)."""
        params = self._params(("type", "recursive"), ("stream", "true"))
        async with self._http.request("POST", "/api/v0/pin/ls", params=params, stream=True) as resp:
            async for line in self._http.iter_json_lines(resp):
                if isinstance(line, dict) and isinstance(line.get("Cid"), str):
                    yield node_cid(line["Cid"], self._http)
                elif isinstance(line, dict) and isinstance(line.get("Keys"), dict):  # stream ignored
                    for key in line["Keys"]:
                        yield node_cid(key, self._http)

    async def unpin(self, cid: str) -> None:
        decode_cid(cid)
        try:
            await self._call("pin/rm", self._params(("recursive", "true"), arg=cid), cid=cid)
        except NodeError as exc:
            if not _is_not_pinned(exc):
                raise

    async def require_pinned(self, cid: str) -> None:
        if not await self.is_pinned(cid):
            raise self._http.error(NotPinnedError, f"{self.url} does not pin {cid}", cid=cid)

    # -- naming ----------------------------------------------------------------------------------

    async def put_ipns_record(self, name: str, record: bytes) -> None:
        """`routing/put /ipns/<name>`; js-ipfs lacks `routing/*`, so fall back to `dht/put`."""
        key = name if name.startswith("/ipns/") else f"/ipns/{name}"

        async def one() -> AsyncIterator[bytes]:
            yield record

        for cmd, extra in (("routing/put", [("allow-offline", "true")]), ("dht/put", [])):
            try:
                async with self._http.request(
                    "POST",
                    f"/api/v0/{cmd}",
                    params=[("arg", key), *extra],
                    data=stream_part(one()),
                    stream=True,
                ) as resp:
                    async for _ in self._http.iter_json_lines(resp):
                        pass
                return
            except NodeNotSupportedError:
                if cmd == "dht/put":
                    raise
                log.debug("%s lacks routing/put, trying dht/put", self.url)
