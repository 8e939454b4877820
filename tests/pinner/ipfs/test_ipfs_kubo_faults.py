"""The Kubo client against fake nodes that lie, hang or babble: every fault is a typed error."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from multiformats import CID, multihash

from pinner.content_errors import InvalidCid
from pinner.ipfs.errors import (
    BlockMismatchError,
    InvalidNodeUrlError,
    NodeBadResponseError,
    NodeError,
    NodeTimeoutError,
    NodeUnreachableError,
    PinStalledError,
)
from pinner.ipfs.http import BasicAuth, BearerAuth, HttpTimeouts
from pinner.ipfs.kubo import KuboClient, KuboConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BLOCK = b"the real block"
BLOCK_CID = str(CID("base32", 1, "raw", multihash.digest(BLOCK, "sha2-256")))
FAST = KuboConfig(timeouts=HttpTimeouts(connect=1, call=0.5, read=0.5), pin_no_progress_timeout=0.5)


@pytest.fixture
async def fake_node(aiohttp_server: Any) -> AsyncIterator[Callable[..., Awaitable[KuboClient]]]:
    clients: list[KuboClient] = []

    async def make(routes: dict[str, Handler], config: KuboConfig = FAST, **kw: Any) -> KuboClient:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_post(f"/api/v0/{path}", handler)
        server = await aiohttp_server(app)
        client = KuboClient(str(server.make_url("/")), config=config, **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def reply(body: bytes | str, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=body.encode() if isinstance(body, str) else body, status=status)

    return handler


async def hang(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


def lines(*values: Any, then_hang: bool = False, interval: float = 0.0) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for value in values:
            await resp.write(json.dumps(value).encode() + b"\n")
            await asyncio.sleep(interval)
        if then_hang:
            await asyncio.sleep(3600)
        await resp.write_eof()
        return resp

    return handler


async def test_block_with_wrong_bytes_is_a_mismatch(fake_node: Any) -> None:
    node = await fake_node({"block/get": reply(b"not the real block")})
    with pytest.raises(BlockMismatchError) as err:
        await node.get_block(BLOCK_CID)
    assert (err.value.cid, err.value.node_url, err.value.code) == (BLOCK_CID, node.url, "block_mismatch")


async def test_block_with_right_bytes_passes(fake_node: Any) -> None:
    node = await fake_node({"block/get": reply(BLOCK)})
    assert await node.get_block(BLOCK_CID) == BLOCK


async def test_oversized_block_is_refused_before_it_fills_memory(fake_node: Any) -> None:
    config = KuboConfig(timeouts=FAST.timeouts, max_block_size=1024)
    node = await fake_node({"block/get": reply(b"x" * 5000)}, config=config)
    with pytest.raises(NodeBadResponseError):
        await node.get_block(BLOCK_CID)


async def test_pin_that_never_answers_stalls(fake_node: Any) -> None:
    node = await fake_node({"pin/add": hang})
    with pytest.raises(PinStalledError) as err:
        await node.pin(BLOCK_CID)
    assert err.value.code == "pin_stalled" and err.value.cid == BLOCK_CID


async def test_pin_repeating_the_same_progress_stalls(fake_node: Any) -> None:
    node = await fake_node({"pin/add": lines(*[{"Progress": 3}] * 40, interval=0.05)})
    seen: list[int] = []
    with pytest.raises(PinStalledError) as err:
        await node.pin(BLOCK_CID, on_progress=seen.append)
    assert seen == [3]
    assert "3 blocks" in str(err.value)


async def test_pin_that_keeps_progressing_outlives_the_stall_window(fake_node: Any) -> None:
    progress = [{"Progress": i} for i in range(1, 16)]  # 15 x 0.1 s: longer than the 0.5 s window
    node = await fake_node({"pin/add": lines(*progress, {"Pins": [BLOCK_CID]}, interval=0.1)})
    seen: list[int] = []
    status = await node.pin(BLOCK_CID, on_progress=seen.append)
    assert status.state == "pinned" and seen == list(range(1, 16))


async def test_pin_answer_without_the_cid_is_not_a_success(fake_node: Any) -> None:
    node = await fake_node({"pin/add": lines({"Pins": []})})
    with pytest.raises(NodeBadResponseError):
        await node.pin(BLOCK_CID)


async def test_hanging_call_times_out(fake_node: Any) -> None:
    node = await fake_node({"id": hang})
    with pytest.raises(NodeTimeoutError) as err:
        await node.info()
    assert err.value.node_url == node.url


async def test_stream_that_stops_mid_way_times_out(fake_node: Any) -> None:
    node = await fake_node({"pin/ls": lines({"Cid": BLOCK_CID, "Type": "recursive"}, then_hang=True)})
    with pytest.raises(NodeTimeoutError):
        _ = [cid async for cid in node.list_pins()]


async def test_closed_port_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with KuboClient(f"http://127.0.0.1:{port}", config=FAST) as node:
        with pytest.raises(NodeUnreachableError) as err:
            await node.version()
    assert err.value.code == "node_unreachable"


@pytest.mark.parametrize(
    ("cmd", "body"),
    [
        ("id", "<html>hello</html>"),
        ("id", "[1, 2]"),
        ("version", "{}"),
        ("repo/stat", '{"RepoSize": "lots", "StorageMax": 1}'),
        ("block/stat", '{"Key": "x"}'),
    ],
)
async def test_garbage_answers_are_bad_responses(fake_node: Any, cmd: str, body: str) -> None:
    node = await fake_node({cmd: reply(body)})
    call = {
        "id": node.id,
        "version": node.version,
        "repo/stat": node.repo_stat,
        "block/stat": lambda: node.stat_block(BLOCK_CID),
    }[cmd]
    with pytest.raises(NodeBadResponseError):
        await call()


async def test_kubo_error_body_is_carried(fake_node: Any) -> None:
    body = json.dumps({"Message": "blockstore: block not found", "Code": 0, "Type": "error"})
    node = await fake_node({"block/stat": reply(body, status=500)})
    with pytest.raises(NodeError) as err:
        await node.stat_block(BLOCK_CID)
    assert (err.value.status, err.value.node_message) == (500, "blockstore: block not found")
    assert err.value.cid == BLOCK_CID and err.value.code == "node_error"


async def test_error_line_mid_stream_raises(fake_node: Any) -> None:
    node = await fake_node(
        {"pin/ls": lines({"Cid": BLOCK_CID, "Type": "recursive"}, {"Message": "disk gone", "Type": "error"})}
    )
    with pytest.raises(NodeError) as err:
        _ = [cid async for cid in node.list_pins()]
    assert err.value.node_message == "disk gone"


async def test_routing_put_falls_back_to_dht_put(fake_node: Any) -> None:
    received: dict[str, Any] = {}

    async def dht_put(request: web.Request) -> web.StreamResponse:
        received["arg"] = request.query["arg"]
        form = await request.post()
        received["record"] = form["file"].file.read()  # type: ignore[union-attr]
        return web.Response(body=b"")

    node = await fake_node(
        {"routing/put": reply('{"Message":"Not Found","Code":3}', 404), "dht/put": dht_put}
    )
    await node.put_ipns_record("k51example", b"\x0a\x01record")
    assert received == {"arg": "/ipns/k51example", "record": b"\x0a\x01record"}


@pytest.mark.parametrize(
    ("auth", "expected"),
    [(BasicAuth("alice", "s3cret"), "Basic YWxpY2U6czNjcmV0"), (BearerAuth("tok"), "Bearer tok")],
)
async def test_auth_header_is_sent(fake_node: Any, auth: Any, expected: str) -> None:
    seen: list[str | None] = []

    async def version(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"Version": "0.30.0"})

    node = await fake_node({"version": version}, auth=auth)
    assert await node.version() == "0.30.0"
    assert seen == [expected]


async def test_cids_from_nodes_are_normalised(fake_node: Any) -> None:
    b58 = str(CID.decode(BLOCK_CID).set(base="base58btc"))
    node = await fake_node(
        {
            "pin/ls": lines({"Cid": b58, "Type": "recursive"}),
            "block/stat": reply(json.dumps({"Key": b58, "Size": "14"})),
        }
    )
    assert [cid async for cid in node.list_pins()] == [BLOCK_CID]
    stat = await node.stat_block(b58)
    assert (stat.cid, stat.size) == (BLOCK_CID, 14)


async def test_bad_input_is_refused_before_any_request() -> None:
    with pytest.raises(InvalidNodeUrlError):
        KuboClient("ftp://127.0.0.1:5001")
    with pytest.raises(InvalidNodeUrlError):
        KuboClient("127.0.0.1:5001")
    async with KuboClient("http://127.0.0.1:9") as node:
        with pytest.raises(InvalidCid):
            await node.get_block("not-a-cid")


async def test_pin_sends_its_name_and_connects_origins_first(fake_node: Any) -> None:
    calls: list[tuple[str, dict[str, str]]] = []

    def recording(path: str, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            calls.append((path, dict(request.query)))
            return await handler(request)

        return wrapped

    node = await fake_node(
        {
            "swarm/connect": recording("swarm/connect", reply('{"Strings": ["connect ok"]}')),
            "pin/add": recording("pin/add", lines({"Pins": [BLOCK_CID]})),
        }
    )
    await node.pin(BLOCK_CID, name="shard-3", origins=("/ip4/127.0.0.1/tcp/4001/p2p/QmPeer",))
    assert [path for path, _ in calls] == ["swarm/connect", "pin/add"]
    assert calls[0][1]["arg"] == "/ip4/127.0.0.1/tcp/4001/p2p/QmPeer"
    assert calls[1][1]["name"] == "shard-3" and calls[1][1]["progress"] == "true"


async def test_unreachable_origin_does_not_stop_the_pin(fake_node: Any) -> None:
    node = await fake_node(
        {"swarm/connect": reply('{"Message": "dial failed"}', 500), "pin/add": lines({"Pins": [BLOCK_CID]})}
    )
    status = await node.pin(BLOCK_CID, origins=("/ip4/127.0.0.1/tcp/1/p2p/QmGone",))
    assert status.state == "pinned"


async def test_car_import_that_pins_nothing_is_not_a_success(fake_node: Any) -> None:
    node = await fake_node({"dag/import": lines()})  # the stream ended early, as after a trailer error

    async def car() -> Any:
        yield b"\x00"

    with pytest.raises(NodeBadResponseError):
        await node.import_car(car())


async def test_car_import_root_pin_error_is_reported(fake_node: Any) -> None:
    node = await fake_node(
        {"dag/import": lines({"Root": {"Cid": {"/": BLOCK_CID}, "PinErrorMsg": "no space"}})}
    )

    async def car() -> Any:
        yield b"\x00"

    with pytest.raises(NodeError) as err:
        await node.import_car(car())
    assert err.value.cid == BLOCK_CID and err.value.node_message == "no space"
