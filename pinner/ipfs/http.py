"""One HTTP seam for the node clients: session ownership, auth, timeouts, and every failure as a typed error.

Kubo RPC, IPFS Cluster and the Pinning Service API all speak JSON over HTTP; what differs is the paths
and the shapes. Everything that can go wrong on the wire (refused, hung, garbage, non-2xx) is mapped
here once to a `pinner.ipfs.errors.NodeError` subclass carrying the node URL, the CID and the node's message.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp

from pinner.cids import decode_cid, normalize_cid, rehash_matches
from pinner.content_errors import InvalidCid
from pinner.errors import PinnerError
from pinner.ipfs.errors import (
    BlockMismatchError,
    InvalidNodeUrlError,
    NodeBadResponseError,
    NodeError,
    NodeNotSupportedError,
    NodeRedirectError,
    NodeTimeoutError,
    NodeUnreachableError,
)
from pinner.ipfs.jsonlines import LineReader, LineTooLongError, loads

NODE_MESSAGE_MAX = 300  # characters of a node's own error text kept in our errors (it is untrusted)


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str

    def header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class BearerAuth:
    token: str

    def header(self) -> str:
        return f"Bearer {self.token}"


NodeAuth = BasicAuth | BearerAuth


@dataclass(frozen=True)
class HttpTimeouts:
    """Seconds. `call` bounds a whole small call; `read` bounds each wait for bytes on a stream."""

    connect: float = 5.0
    call: float = 60.0
    read: float = 60.0
    max_json_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("connect", "call", "read"):
            if getattr(self, name) <= 0:
                raise ValueError(f"timeout {name} must be positive, got {getattr(self, name)}")
        if self.max_json_bytes <= 0:
            raise ValueError("max_json_bytes must be positive")


def check_node_url(url: str) -> str:
    """The URL without a trailing slash; `InvalidNodeUrlError` unless it is http(s) with a host and
    without userinfo, query or fragment (credentials go in `auth`; paths are the client's to add)."""
    shown = f"{url[:200]!r}{'...' if len(url) > 200 else ''}"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InvalidNodeUrlError(f"node URL {shown} is not a valid URL", node_url=url[:200]) from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidNodeUrlError(
            f"node URL {shown} must be http:// or https:// with a host", node_url=url[:200]
        )
    for part, present in (("userinfo", "@" in parts.netloc), ("query", "?" in url), ("fragment", "#" in url)):
        if present:
            raise InvalidNodeUrlError(
                f"node URL {shown} must not have a {part} part (give credentials as auth)"
                if part == "userinfo"
                else f"node URL {shown} must not have a {part} part",
                node_url=url[:200],
                part=part,
            )
    return url.rstrip("/")


def _bounded(text: str) -> str:
    return text if len(text) <= NODE_MESSAGE_MAX else text[:NODE_MESSAGE_MAX] + "..."


def node_message(body: bytes) -> str | None:
    """The error text in a Kubo (`Message`), Cluster (`message`) or Pinning Service (`error.reason`) body,
    at most `NODE_MESSAGE_MAX` characters."""
    try:
        data = loads(body)
    except ValueError:
        text = body[: NODE_MESSAGE_MAX * 4].decode("utf-8", "replace").strip()
        return _bounded(text) or None
    if isinstance(data, dict):
        if isinstance(data.get("Message"), str):
            return _bounded(str(data["Message"]))
        if isinstance(data.get("message"), str):
            return _bounded(str(data["message"]))
        err = data.get("error")
        if isinstance(err, dict):
            reason, details = err.get("reason"), err.get("details")
            return _bounded(": ".join(str(x)[:NODE_MESSAGE_MAX] for x in (reason, details) if x)) or None
    return None


class HttpEndpoint:
    """A base URL plus the session, auth and timeouts used for every request to it."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        auth: NodeAuth | None = None,
        timeouts: HttpTimeouts = HttpTimeouts(),
    ) -> None:
        self.url = check_node_url(url)
        self._session = session
        self._owns_session = session is None
        self._auth = auth
        self.timeouts = timeouts

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def error(self, cls: type[NodeError], message: str, *, cid: str | None = None, **kw: Any) -> NodeError:
        return cls(message, node_url=self.url, cid=cid, **kw)

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        json_body: Any = None,
        data: Any = None,
        stream: bool = False,
        cid: str | None = None,
        ok: tuple[int, ...] = (200,),
        read_timeout: float | object | None = ...,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request; yields the response once its status is one of `ok`.

        `stream=True` drops the whole-call bound and keeps only the per-read one, for bodies of any
        size; `read_timeout=None` drops the per-read bound too (the caller runs its own watchdog).
        Failures inside the `async with` body (a stalled or broken stream) are mapped too.
        """
        t = self.timeouts
        sock_read = t.read if read_timeout is ... else read_timeout
        timeout = aiohttp.ClientTimeout(
            total=None if stream else t.call,
            connect=t.connect,
            sock_connect=t.connect,
            sock_read=sock_read if isinstance(sock_read, float | int) else None,
        )
        headers = {"Authorization": self._auth.header()} if self._auth else {}
        what = f"{method} {path}"
        try:
            resp = await self._send(method, path, params, json_body, data, headers, timeout)
            async with resp:
                if 300 <= resp.status < 400 and resp.status not in ok:  # never followed: see _send
                    raise self.error(
                        NodeRedirectError,
                        f"{what} on {self.url} answered with a redirect (HTTP {resp.status}); "
                        "node requests never follow redirects: register the node's final URL",
                        cid=cid,
                        status=resp.status,
                    )
                if resp.status not in ok:
                    body = await resp.content.read(64 * 1024)
                    msg = node_message(body)
                    cls = NodeNotSupportedError if resp.status in (404, 405) and cid is None else NodeError
                    raise self.error(
                        cls,
                        f"{what} on {self.url} failed with HTTP {resp.status}: {msg or 'no message'}",
                        cid=cid,
                        status=resp.status,
                        node_message=msg,
                    )
                yield resp
        except PinnerError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise self.error(NodeTimeoutError, f"{what} on {self.url} timed out", cid=cid) from exc
        except aiohttp.ClientPayloadError as exc:
            raise self.error(
                NodeBadResponseError, f"{what} on {self.url}: broken response body: {exc}", cid=cid
            ) from exc
        except aiohttp.ClientResponseError as exc:
            raise self.error(
                NodeBadResponseError, f"{what} on {self.url}: malformed response: {exc}", cid=cid
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self.error(
                NodeUnreachableError, f"{what}: cannot reach {self.url}: {exc}", cid=cid
            ) from exc

    async def _send(
        self,
        method: str,
        path: str,
        params: Any,
        json_body: Any,
        data: Any,
        headers: dict[str, str],
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send, retrying once when a pooled keep-alive connection turns out dead (the node restarted).

        Only bodies that can be sent twice are retried; a streamed upload is never replayed.
        Redirects are never followed: a node could otherwise send our request (a 307 keeps the method,
        body and credentials) to a host `replication.allowed_node_hosts` never allowed.
        """
        replayable = data is None or isinstance(data, bytes | str)
        for attempt in (1, 2):
            try:
                return await self._get_session().request(
                    method,
                    self.url + path,
                    params=params,
                    json=json_body,
                    data=data,
                    headers=headers,
                    timeout=client_timeout,
                    allow_redirects=False,
                )
            except aiohttp.ServerDisconnectedError:
                if attempt == 2 or not replayable:
                    raise
        raise AssertionError("unreachable")

    async def read_limited(
        self, resp: aiohttp.ClientResponse, limit: int, *, cid: str | None = None
    ) -> bytes:
        """The whole body, refusing one longer than `limit` bytes (a node must not fill our memory)."""
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            buf += chunk
            if len(buf) > limit:
                raise self.error(NodeBadResponseError, f"{self.url} sent more than {limit} bytes", cid=cid)
        return bytes(buf)

    async def read_json(self, resp: aiohttp.ClientResponse, *, cid: str | None = None) -> Any:
        body = await self.read_limited(resp, self.timeouts.max_json_bytes, cid=cid)
        return self.parse_json(body, cid=cid)

    def parse_json(self, body: bytes, *, cid: str | None = None) -> Any:
        try:
            return loads(body)
        except ValueError as exc:
            raise self.error(
                NodeBadResponseError,
                f"{self.url} answered with something that is not JSON we accept ({exc}): {body[:80]!r}",
                cid=cid,
            ) from exc

    async def iter_json_lines(
        self, resp: aiohttp.ClientResponse, *, cid: str | None = None
    ) -> AsyncIterator[Any]:
        """Newline-delimited JSON values; a `{"Type": "error"}` line (Kubo stream error) raises.

        Linear however the node cuts the stream; a line over `max_json_bytes` is `NodeBadResponseError`.
        """
        reader = LineReader(self.timeouts.max_json_bytes)
        try:
            async for chunk in resp.content.iter_any():
                for line in reader.feed(chunk):
                    if line.strip():
                        yield self._checked_line(line, cid)
            last = reader.finish()
        except LineTooLongError as exc:
            raise self.error(NodeBadResponseError, f"{self.url} sent {exc}", cid=cid) from None
        if last.strip():
            yield self._checked_line(last, cid)

    def _checked_line(self, line: bytes, cid: str | None) -> Any:
        value = self.parse_json(line, cid=cid)
        if isinstance(value, dict) and value.get("Type") == "error" and "Message" in value:
            raise self.error(
                NodeError,
                f"{self.url} reported an error mid-stream: {_bounded(str(value['Message']))}",
                cid=cid,
                node_message=_bounded(str(value["Message"])),
            )
        return value


def stream_part(body: AsyncIterable[bytes], *, filename: str = "file") -> aiohttp.MultipartWriter:
    """A multipart form with one file part streamed from `body`, as Kubo's `add`/`dag/import` expect.

    The part carries a Content-Type: js-ipfs answers 500 to a part without one.
    """
    writer = aiohttp.MultipartWriter("form-data")
    payload = aiohttp.payload.AsyncIterablePayload(body, content_type="application/octet-stream")
    payload.set_content_disposition("form-data", name="file", filename=filename)
    writer.append_payload(payload)
    return writer


def node_cid(text: object, endpoint: HttpEndpoint, *, cid: str | None = None) -> str:
    """A CID the node sent, normalised; a malformed one is the node's fault (`NodeBadResponseError`)."""
    try:
        return normalize_cid(str(text))
    except InvalidCid as exc:
        raise endpoint.error(
            NodeBadResponseError, f"{endpoint.url} sent {text!r:.80} where a CID belongs", cid=cid
        ) from exc


def verify_node_block(cid_text: str, data: bytes, *, node_url: str = "") -> None:
    """Re-hash bytes a node sent for `cid_text` with the CID's hash function; nodes are never trusted.

    Raises `BlockMismatchError` naming the node when they differ (or the hash function is not available
    here), `InvalidCid` when `cid_text` is not a CID.
    """
    cid = decode_cid(cid_text)
    try:
        matches = rehash_matches(cid, data)
    except InvalidCid as exc:  # hash function without an implementation here
        raise BlockMismatchError(
            f"cannot verify block {cid_text}: hash function {cid.hashfun.name} is not available",
            node_url=node_url,
            cid=cid_text,
        ) from exc
    if not matches:
        raise BlockMismatchError(
            f"node {node_url} returned {len(data)} bytes for {cid_text} that hash to a different digest",
            node_url=node_url,
            cid=cid_text,
        )


def json_dict(value: Any, endpoint: HttpEndpoint, what: str, *, cid: str | None = None) -> dict[str, Any]:
    """`value` if it is a JSON object, else `NodeBadResponseError` naming what was expected."""
    if not isinstance(value, dict):
        raise endpoint.error(
            NodeBadResponseError,
            f"{endpoint.url}: expected a JSON object for {what}, got {value!r:.80}",
            cid=cid,
        )
    return value


class EndpointClient:
    """What every node client built on one `HttpEndpoint` shares: its URL, closing, ``async with``."""

    _http: HttpEndpoint

    @property
    def url(self) -> str:
        return self._http.url

    async def close(self) -> None:
        """Close the session if this client opened it (a session passed in is never closed here)."""
        await self._http.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _json(self, method: str, path: str, *, cid: str | None = None, **kw: Any) -> Any:
        async with self._http.request(method, path, cid=cid, **kw) as resp:
            return await self._http.read_json(resp, cid=cid)
