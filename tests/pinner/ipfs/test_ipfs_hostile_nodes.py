"""Hostile node answers (issue #12 items 9 and 10): redirects are never followed, NDJSON is read in linear
time with a line limit, deeply nested JSON and huge error texts become bounded, typed errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

import pinner.ipfs.http as http_mod
from pinner.ipfs.cluster import ClusterClient, ClusterConfig
from pinner.ipfs.errors import InvalidNodeUrlError, NodeBadResponseError, NodeError, NodeRedirectError
from pinner.ipfs.http import HttpEndpoint, HttpTimeouts, check_node_url
from pinner.ipfs.jsonlines import LineReader, LineTooLongError, check_depth, loads
from pinner.ipfs.kubo import KuboClient, KuboConfig
from pinner.ipfs.pinning_service import PinningServiceClient, PinningServiceConfig

TIMEOUTS = HttpTimeouts(connect=2, call=10, read=10)
DEEP = b"[" * 100_000 + b"]" * 100_000
Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve(aiohttp_server: Any) -> AsyncIterator[Serve]:
    async def start(app: web.Application) -> str:
        return str((await aiohttp_server(app)).make_url("/")).rstrip("/")

    yield start


def redirecting(location: str) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(location + request.path_qs)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def clients(url: str) -> list[Any]:
    return [
        KuboClient(url, config=KuboConfig(timeouts=TIMEOUTS)),
        ClusterClient(url, config=ClusterConfig(timeouts=TIMEOUTS)),
        PinningServiceClient(url, "secret-token", config=PinningServiceConfig(timeouts=TIMEOUTS)),
    ]


# -- item 9: redirects ---------------------------------------------------------------------------


async def test_a_redirect_to_another_host_is_a_typed_error_and_the_other_host_gets_nothing(
    serve: Serve,
) -> None:
    seen: list[str] = []

    async def victim(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path} {request.headers.get('Authorization')}")
        return web.json_response({"ID": "x", "Version": "1", "id": "x", "count": 0, "results": []})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", victim)
    other_url = await serve(other)
    node_url = await serve(redirecting(other_url))  # another port: another host as far as HTTP goes
    for client in clients(node_url):
        async with client:
            with pytest.raises(NodeRedirectError) as caught:
                await client.info()
        assert caught.value.status == 307 and caught.value.code == "node_redirect"
        assert "never follow redirects" in caught.value.message
    assert seen == []


async def test_a_redirected_post_with_a_body_is_not_replayed_elsewhere(serve: Serve) -> None:
    seen: list[bytes] = []

    async def victim(request: web.Request) -> web.StreamResponse:
        seen.append(await request.read())
        return web.json_response({"Key": "x", "Size": 1})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", victim)
    node_url = await serve(redirecting(await serve(other)))
    endpoint = HttpEndpoint(node_url, timeouts=TIMEOUTS)
    try:
        with pytest.raises(NodeRedirectError):
            async with endpoint.request("POST", "/api/v0/block/put", data=b"secret block"):
                pass
    finally:
        await endpoint.close()
    assert seen == []


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("http://user:pw@127.0.0.1:5001", "userinfo"),
        ("http://user@127.0.0.1:5001/", "userinfo"),
        ("http://127.0.0.1:5001/?x=1", "query"),
        ("http://127.0.0.1:5001/?", "query"),
        ("http://127.0.0.1:5001/#frag", "fragment"),
    ],
)
def test_node_urls_with_userinfo_query_or_fragment_are_refused(url: str, part: str) -> None:
    with pytest.raises(InvalidNodeUrlError) as caught:
        check_node_url(url)
    assert caught.value.part == part and part in caught.value.message


def test_a_huge_node_url_is_named_in_bounded_size() -> None:
    with pytest.raises(InvalidNodeUrlError) as caught:
        check_node_url("ftp://" + "a" * 100_000)
    assert len(caught.value.message) < 400


async def test_a_node_error_text_is_bounded(serve: Serve) -> None:
    async def babble(request: web.Request) -> web.StreamResponse:
        return web.json_response({"Message": "A" * 1_000_000, "Code": 0}, status=500)

    app = web.Application()
    app.router.add_post("/api/v0/id", babble)
    async with KuboClient(await serve(app), config=KuboConfig(timeouts=TIMEOUTS)) as client:
        with pytest.raises(NodeError) as caught:
            await client.info()
    assert len(caught.value.message) < 1000 and len(caught.value.node_message or "") <= 310


# -- item 10: NDJSON in linear time, with a line limit -------------------------------------------


def ndjson(n: int) -> bytes:
    return b"".join(
        json.dumps({"Cid": {"/": f"bafy{i}"}, "Type": "recursive"}).encode() + b"\n" for i in range(n)
    )


def test_trickled_ndjson_costs_linear_copying() -> None:
    """2 MiB in 64-byte pieces: every byte is copied a constant number of times (the old reader re-joined
    and re-split the whole pending buffer per piece: ~35 s of CPU for one long line)."""
    body = ndjson(2000)
    body += b'{"long": "' + b"x" * (2 * 1024 * 1024 - len(body) - 20) + b'"}\n' + ndjson(3)
    reader = LineReader(16 * 1024 * 1024)
    got: list[bytes] = []
    pieces = 0
    for i in range(0, len(body), 64):
        got.extend(reader.feed(body[i : i + 64]))
        pieces += 1
    tail = reader.finish()
    assert pieces > 32_000 and tail == b""
    assert got == body.split(b"\n")[:-1]
    assert reader.copied <= 2 * len(body)  # O(N): quadratic re-buffering would be ~32,000x this


def test_a_line_over_the_limit_is_refused_while_it_grows() -> None:
    reader = LineReader(1000)
    assert reader.feed(b"x" * 600 + b"\n" + b"y" * 600) == [b"x" * 600]
    with pytest.raises(LineTooLongError):
        for _ in range(10):
            reader.feed(b"y" * 64)
    assert reader.copied < 3000


async def test_a_node_trickling_ndjson_is_read_in_linear_work(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = ndjson(3000)  # ~190 KiB

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(0, len(body), 64):
            await resp.write(body[i : i + 64])
            if i % 8192 == 0:
                await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    readers: list[LineReader] = []

    class Counting(LineReader):
        def __init__(self, limit: int) -> None:
            super().__init__(limit)
            readers.append(self)

    monkeypatch.setattr(http_mod, "LineReader", Counting)
    app = web.Application()
    app.router.add_get("/s", trickle)
    endpoint = HttpEndpoint(await serve(app), timeouts=TIMEOUTS)
    try:
        async with endpoint.request("GET", "/s", stream=True) as resp:
            values = [v async for v in endpoint.iter_json_lines(resp)]
    finally:
        await endpoint.close()
    assert len(values) == 3000 and values[-1]["Cid"]["/"] == "bafy2999"
    assert len(readers) == 1 and readers[0].copied <= 2 * len(body)


async def test_an_endless_ndjson_line_is_a_typed_error_before_the_stream_ends(serve: Serve) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"z" * 1024)
        await asyncio.sleep(3600)  # never ends: only the line limit can stop the reader
        return resp

    app = web.Application()
    app.router.add_get("/s", endless)
    timeouts = HttpTimeouts(connect=2, call=60, read=60, max_json_bytes=16 * 1024)
    endpoint = HttpEndpoint(await serve(app), timeouts=timeouts)
    try:
        with pytest.raises(NodeBadResponseError, match="over 16384 bytes"):
            async with endpoint.request("GET", "/s", stream=True) as resp:
                async for _ in endpoint.iter_json_lines(resp):
                    pass
    finally:
        await endpoint.close()


# -- item 10: nesting ----------------------------------------------------------------------------


def test_deep_json_is_a_shape_error_never_a_recursion_error() -> None:
    for body in (DEEP, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"[" * 65 + b"]" * 65):
        with pytest.raises(ValueError, match="nested deeper"):
            loads(body)
    assert loads(b"[" * 64 + b"]" * 64) is not None
    assert loads(b'{"Keys": {"a": {"Type": "recursive"}}, "s": "[[[[[[[[[[[[[[[[[[[[[["}') is not None
    check_depth({"x": [[1], {"y": 2}]}, limit=3)


async def test_a_100000_deep_json_answer_is_a_typed_node_error(serve: Serve) -> None:
    async def deep(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=DEEP, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", deep)
    url = await serve(app)
    for client in clients(url):
        async with client:
            with pytest.raises(NodeBadResponseError, match="nested deeper"):
                await client.info()
    async with ClusterClient(url, config=ClusterConfig(timeouts=TIMEOUTS)) as cluster:
        with pytest.raises(NodeBadResponseError, match="nested deeper"):
            await cluster.peers()  # the NDJSON path
    async with KuboClient(url, config=KuboConfig(timeouts=TIMEOUTS)) as kubo:
        with pytest.raises(NodeError):  # an error answer's body is parsed too
            await kubo.unpin("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")


# -- fuzz: any bytes, any cuts: the node's lines or a typed error ---------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=40))
def test_fuzz_line_reader_and_loads(body: bytes, cuts: list[int]) -> None:
    reader = LineReader(512)
    got: list[bytes] = []
    i = 0
    try:
        while i < len(body):
            size = cuts[i % len(cuts)]
            got.extend(reader.feed(body[i : i + size]))
            i += size
        got.append(reader.finish())
    except LineTooLongError:
        assert any(len(line) > 512 for line in body.split(b"\n"))
        return
    assert got == body.split(b"\n") and reader.copied <= 2 * len(body)
    for line in got:
        try:
            loads(line)
        except ValueError:
            pass
