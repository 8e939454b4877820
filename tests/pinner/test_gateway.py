"""The trustless gateway routes on a small aiohttp app over a real FsBlockstore."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pinner.blockstore import FsBlockstore
from pinner.car import read_car
from pinner.gateway import CACHE_CONTROL, gateway_routes
from pinner.unixfs import UnixfsParams

DATA = os.urandom(5000)
PARAMS = UnixfsParams(chunk_size=1024, max_links=3)


@pytest.fixture
def store(tmp_path: Path) -> FsBlockstore:
    return FsBlockstore(tmp_path / "store")


@pytest.fixture
def cid(store: FsBlockstore) -> str:
    writer = store.begin_file(PARAMS)
    writer.write(DATA)
    return str(writer.commit().cid)


@pytest.fixture
async def client(aiohttp_client: Any, store: FsBlockstore) -> Any:
    app = web.Application()
    app.add_routes(gateway_routes(lambda _request: store))
    return await aiohttp_client(app)


async def test_file_bytes_with_trustless_headers(client: Any, cid: str) -> None:
    resp = await client.get(f"/ipfs/{cid}")
    assert resp.status == 200
    assert await resp.read() == DATA
    assert resp.headers["ETag"] == f'"{cid}"'
    assert resp.headers["X-Ipfs-Roots"] == cid
    assert resp.headers["Cache-Control"] == CACHE_CONTROL
    assert resp.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=100-2099", 100, 2100), ("bytes=4000-", 4000, 5000), ("bytes=-10", 4990, 5000)],
)
async def test_range_requests(client: Any, cid: str, header: str, start: int, end: int) -> None:
    resp = await client.get(f"/ipfs/{cid}", headers={"Range": header})
    assert resp.status == 206
    assert await resp.read() == DATA[start:end]
    assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(DATA)}"


async def test_unsatisfiable_range(client: Any, cid: str) -> None:
    resp = await client.get(f"/ipfs/{cid}", headers={"Range": "bytes=6000-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"


async def test_head_has_length_and_no_body(client: Any, cid: str) -> None:
    resp = await client.head(f"/ipfs/{cid}")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert await resp.read() == b""


@pytest.mark.parametrize(
    "how", [{"params": {"format": "raw"}}, {"headers": {"Accept": "application/vnd.ipld.raw"}}]
)
async def test_raw_block(client: Any, store: FsBlockstore, cid: str, how: dict[str, Any]) -> None:
    resp = await client.get(f"/ipfs/{cid}", **how)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.ipld.raw"
    assert await resp.read() == store.get_block(cid)


@pytest.mark.parametrize(
    "how", [{"params": {"format": "car"}}, {"headers": {"Accept": "application/vnd.ipld.car"}}]
)
async def test_car_of_the_whole_dag(client: Any, cid: str, how: dict[str, Any]) -> None:
    resp = await client.get(f"/ipfs/{cid}", **how)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/vnd.ipld.car")
    roots, blocks = read_car(io.BytesIO(await resp.read()))
    assert [str(r) for r in roots] == [cid]
    assert len(list(blocks)) == 5 + 2 + 1  # 5 leaves, 2 nodes of 3 links, the root


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/ipfs/not-a-cid", 400, "invalid_cid"),
        ("/ipfs/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", 404, "not_found"),
        ("/ipfs/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o?format=car", 404, "not_found"),
        ("/ipfs/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o?format=tar", 400, "bad_request"),
    ],
)
async def test_errors_are_json(client: Any, path: str, status: int, code: str) -> None:
    resp = await client.get(path)
    assert resp.status == status
    body = await resp.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_corrupt_block_is_a_5xx_and_quarantined(client: Any, store: FsBlockstore, cid: str) -> None:
    path = store.file_path(cid)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0xFF
    path.write_bytes(bytes(raw))
    resp = await client.get(f"/ipfs/{cid}")
    assert resp.status == 500
    assert (await resp.json())["error"]["code"] == "corrupt_block"
    assert not store.has(cid)
    assert (await client.get(f"/ipfs/{cid}")).status == 404


async def test_if_none_match_gives_304(client: Any, cid: str) -> None:
    resp = await client.get(f"/ipfs/{cid}", headers={"If-None-Match": f'"{cid}"'})
    assert resp.status == 304


async def test_head_raw_has_length_and_no_body(client: Any, store: FsBlockstore, cid: str) -> None:
    resp = await client.head(f"/ipfs/{cid}?format=raw")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(store.get_block(cid)))
    assert await resp.read() == b""


@pytest.mark.parametrize(
    "header", ["bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 30]
)
async def test_range_with_huge_numbers_is_a_400(client: Any, cid: str, header: str) -> None:
    resp = await client.get(f"/ipfs/{cid}", headers={"Range": header})
    assert resp.status == 400
    assert len(await resp.read()) < 1024
