"""#12 item 5: a blob no pack references is readable only by its uploader (and global admins) until a pack
references it; everyone else gets the same 404 as for bytes that are not stored, on every read route."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from registry.api.keys import REGISTRY
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

DATA = helpers.shard_bytes(600_000, seed=11)  # three chunks: a root node over leaves
OTHER = helpers.shard_bytes(600_000, seed=12)  # never uploaded
ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/ipfs/{cid}", {}),
    ("HEAD", "/ipfs/{cid}", {}),
    ("GET", "/ipfs/{cid}?format=raw", {}),
    ("GET", "/ipfs/{cid}?format=car", {}),
    ("GET", "/ipfs/{cid}", {"Range": "bytes=0-9"}),
    ("GET", "/v1/blobs/{cid}", {}),
]


async def _answers(client: TestClient, cid: str, auth: dict[str, str]) -> list[tuple[int, Any]]:
    out = []
    for method, path, headers in ROUTES:
        r = await client.request(method, path.format(cid=cid), headers={**headers, **auth})
        body = await r.json() if method == "GET" and r.status >= 400 else None
        if body is not None:  # the CID in the message is the only difference between two 404s
            body["error"]["message"] = body["error"]["message"].replace(cid, "CID")
            body["error"]["details"] = {}
        out.append((r.status, body))
    return out


async def test_an_unreferenced_blob_is_its_uploaders_until_a_pack_references_it(reg: Registry) -> None:
    app = reg.client.app
    bob = (await app[REGISTRY].auth.create_token("bob", namespaces=["beta"])).token
    r = await helpers.upload(reg.client, reg.alice, DATA)
    assert r.status == 201, await r.text()
    cid, missing = helpers.cid_of(DATA), helpers.cid_of(OTHER)

    absent = await _answers(reg.client, missing, {})
    assert all(status == 404 for status, _ in absent)
    for who in ({}, helpers.bearer(bob), helpers.bearer("mpk_not-a-token")):
        assert await _answers(reg.client, cid, who) == absent  # indistinguishable from "not stored"
    for who in (reg.alice, reg.admin):  # the uploader and a global admin read it
        assert all(status in (200, 206) for status, _ in await _answers(reg.client, cid, helpers.bearer(who)))
    r = await reg.client.get(f"/ipfs/{cid}", headers=helpers.bearer(reg.alice))
    assert await r.read() == DATA

    await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [("model.safetensors", DATA)])
    for who in ({}, helpers.bearer(bob)):  # referenced by a pack: the usual (public) read rules
        assert all(status in (200, 206) for status, _ in await _answers(reg.client, cid, who))
    assert await (await reg.client.get(f"/ipfs/{cid}")).read() == DATA


async def test_another_publishers_upload_of_the_same_bytes_does_not_open_them(reg: Registry) -> None:
    app = reg.client.app
    bob = (await app[REGISTRY].auth.create_token("bob", namespaces=["beta"])).token
    cid = helpers.cid_of(DATA)
    assert (await helpers.upload(reg.client, reg.alice, DATA)).status == 201
    assert (await helpers.upload(reg.client, bob, DATA)).status == 200  # bob proved he holds the bytes
    assert (await reg.client.get(f"/ipfs/{cid}")).status == 404  # still the first uploader's, not public
    assert (await reg.client.get(f"/v1/blobs/{cid}", headers=helpers.bearer(bob))).status == 404
