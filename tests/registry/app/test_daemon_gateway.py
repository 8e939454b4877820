"""The daemon serves the trustless gateway over its own blockstore: a published shard is fetchable by CID."""

from __future__ import annotations

import hashlib

from aiohttp.test_utils import TestClient, TestServer

from pinner.unixfs import UnixfsParams, hash_file
from registry.api.keys import BLOCKSTORE
from registry.app.daemon import build_app
from registry.settings import Settings


async def test_gateway_serves_bytes_stored_in_the_daemons_blockstore(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * 4096  # 1 MiB: a multi-block file
    src = tmp_path / "shard.bin"
    src.write_bytes(data)
    params = UnixfsParams(cid_version=1)
    digest = hash_file(src, params)
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        store = app[BLOCKSTORE]
        writer = store.begin_file(params)
        writer.write(data)
        writer.finish()
        writer.commit()
        r = await client.get(f"/ipfs/{digest.cid}")
        assert r.status == 200
        body = await r.read()
        assert hashlib.sha256(body).digest() == digest.sha256
        assert r.headers["X-Ipfs-Roots"].startswith(str(digest.cid))
        r = await client.get(f"/ipfs/{digest.cid}", headers={"Range": "bytes=10-19"})
        assert r.status == 206 and await r.read() == data[10:20]
        r = await client.get("/ipfs/not-a-cid")
        assert r.status == 400 and (await r.json())["error"]["code"]
