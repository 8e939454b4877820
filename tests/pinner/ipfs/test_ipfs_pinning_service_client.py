"""Pinning Service API v1.0.0 client contract tests against an in-test server that follows the spec."""

from __future__ import annotations

from typing import Any

import pytest
from multiformats import CID, multihash

from pinner.ipfs.errors import NodeBadResponseError, NodeError, PinFailedError, PinStalledError
from pinner.ipfs.http import HttpTimeouts
from pinner.ipfs.pinning_service import PinningServiceClient, PinningServiceConfig
from pinner.ipfs.protocol import PinBackend, PinState
from pinner.testing.orchestrators import FakePinningService

CID_A = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
CID_B = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
FAST: dict[str, Any] = dict(
    timeouts=HttpTimeouts(call=2, read=2), poll_interval=0.01, pin_no_progress_timeout=0.3
)


@pytest.fixture
async def service(aiohttp_server: Any) -> Any:
    fake = FakePinningService()
    server = await aiohttp_server(fake.app())
    clients: list[PinningServiceClient] = []

    def connect(token: str = fake.token, **config: Any) -> PinningServiceClient:
        cfg = PinningServiceConfig(**{**FAST, **config})
        client = PinningServiceClient(str(server.make_url("/")), token, config=cfg)
        clients.append(client)
        return client

    yield fake, connect
    for client in clients:
        await client.close()


async def test_is_a_pin_backend(service: Any) -> None:
    _, connect = service
    assert isinstance(connect(), PinBackend)


async def test_pin_polls_the_request_until_pinned(service: Any) -> None:
    fake, connect = service
    status = await connect().pin(CID_A, name="shard", origins=("/ip4/127.0.0.1/tcp/4001/p2p/QmOrigin",))
    assert status.state is PinState.PINNED and status.cid == CID_A
    assert status.request_id == "req-0"
    assert status.delegates == ("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWdelegate",)
    assert fake.pins["req-0"]["pin"] == {
        "cid": CID_A,
        "name": "shard",
        "origins": ["/ip4/127.0.0.1/tcp/4001/p2p/QmOrigin"],
    }


async def test_pinning_again_reuses_the_live_request(service: Any) -> None:
    fake, connect = service
    client = connect()
    await client.pin(CID_A)
    await client.pin(CID_A)
    assert fake.posts == 1


async def test_status_list_and_unpin(service: Any) -> None:
    _, connect = service
    client = connect()
    assert (await client.pin_status(CID_A)).state is PinState.UNPINNED
    await client.pin(CID_A)
    await client.request_pin(CID_B)  # still queued: not listed as pinned
    assert (await client.pin_status(CID_A)).state is PinState.PINNED
    assert (await client.pin_status(CID_B)).state is PinState.QUEUED
    assert [cid async for cid in client.list_pins()] == [CID_A]
    await client.unpin(CID_A)
    assert (await client.pin_status(CID_A)).state is PinState.UNPINNED
    await client.unpin(CID_A)


async def test_list_pins_pages_backwards_with_before(service: Any) -> None:
    fake, connect = service
    client = connect(page_size=2)
    cids = [str(CID("base32", 1, "raw", multihash.digest(bytes([i]), "sha2-256"))) for i in range(5)]
    for cid in cids:
        await client.request_pin(cid)
    for rid in fake.steps:
        fake.steps[rid] = 2  # pinned
    listed = [cid async for cid in client.list_pins()]
    assert sorted(listed) == sorted(cids)


async def test_failed_pin_raises_with_the_service_reason(service: Any) -> None:
    fake, connect = service
    fake.fail = True
    with pytest.raises(PinFailedError) as err:
        await connect().pin(CID_A)
    assert err.value.node_message == "fetch timed out"


async def test_queued_forever_stalls(service: Any) -> None:
    fake, connect = service
    fake.stuck = True
    with pytest.raises(PinStalledError):
        await connect().pin(CID_A)


async def test_wrong_token_is_a_401_with_the_reason(service: Any) -> None:
    _, connect = service
    with pytest.raises(NodeError) as err:
        await connect(token="wrong").info()
    assert err.value.status == 401
    assert err.value.node_message == "UNAUTHORIZED: Access token is missing or invalid"


async def test_info_checks_url_and_token(service: Any) -> None:
    _, connect = service
    info = await connect().info()
    assert info.version == "pinning-service-api/1.0.0"


async def test_off_spec_answers_are_bad_responses(aiohttp_server: Any) -> None:
    from aiohttp import web

    async def bad(request: web.Request) -> web.Response:
        return web.json_response(
            {"count": 1, "results": [{"requestid": "x", "status": "done", "pin": {"cid": CID_A}}]}
        )

    app = web.Application()
    app.router.add_get("/pins", bad)
    server = await aiohttp_server(app)
    async with PinningServiceClient(
        str(server.make_url("/")), "t", config=PinningServiceConfig(**FAST)
    ) as client:
        with pytest.raises(NodeBadResponseError):
            await client.pin_status(CID_A)
