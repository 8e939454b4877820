"""A daemon with workers and the PSA, placing pins on two of the session's js-ipfs peers (the ``live``
fixture in conftest), and what the tests on real nodes share: content added to a peer, waiting on a condition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from pinner.cids import normalize_cid
from pinner.unixfs import UnixfsParams
from tests.ipfs_testnode.peers import IpfsPeer
from tests.registry.api import helpers

PIN_TIMEOUT_S = 10.0
KUBO = UnixfsParams(cid_version=1, raw_leaves=True)  # what `ipfs add --cid-version=1` makes


@dataclass
class Live:
    client: TestClient
    token: str
    nodes: list[IpfsPeer]

    async def status(self, requestid: str, token: str | None = None) -> dict[str, Any]:
        r = await self.client.get(f"/psa/pins/{requestid}", headers=helpers.bearer(token or self.token))
        return dict(await r.json())

    async def pin(self, body: dict[str, Any], token: str | None = None) -> str:
        r = await self.client.post("/psa/pins", json=body, headers=helpers.bearer(token or self.token))
        assert r.status == 202, await r.text()
        return str((await r.json())["requestid"])

    async def pinned_on(self, peer: IpfsPeer) -> set[str]:
        keys = (await asyncio.to_thread(peer.rpc, "pin/ls", type="recursive")).get("Keys") or {}
        return {normalize_cid(k) for k in keys}

    async def on_all(self, cid: str) -> bool:
        return all([cid in await self.pinned_on(n) for n in self.nodes])

    async def on_none(self, cid: str) -> bool:
        return not any([cid in await self.pinned_on(n) for n in self.nodes])

    async def reaches(self, requestid: str, status: str, token: str | None = None) -> None:
        async def there() -> bool:
            return (await self.status(requestid, token))["status"] == status

        await wait_for(there, timeout=PIN_TIMEOUT_S + 60)


async def wait_for(cond: Callable[[], Awaitable[bool]], timeout: float = 90.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def add_to(peer: IpfsPeer, data: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="f.bin")
    async with aiohttp.ClientSession() as http:
        url = f"{peer.api_url}/api/v0/add?cid-version=1&raw-leaves=true&chunker=size-4096"
        async with http.post(url, data=form) as r:
            assert r.status == 200, await r.text()
            return normalize_cid((await r.json(content_type=None))["Hash"])


async def publish_v1(client: TestClient, token: str, model: str, shards: list[tuple[str, bytes]]) -> str:
    """Publish ``acme/<model>`` with CIDv1 shards (js-ipfs lists CIDv0 pins only in base58); its CID."""
    for _, data in shards:
        r = await helpers.upload(client, token, data, cid=helpers.cid_of(data, KUBO))
        assert r.status in (200, 201), await r.text()
    doc = helpers.manifest(shards, model_name=model)
    for entry, (_, data) in zip(doc["shards"], shards, strict=True):
        entry["cid"] = helpers.cid_of(data, KUBO)
    r = await helpers.publish(client, token, f"acme/{model}", {"manifest": doc})
    assert r.status == 201, await r.text()
    return str((await r.json())["cid"])
