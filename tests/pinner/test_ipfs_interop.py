"""Our CIDs and CARs against a real IPFS implementation (a js-ipfs peer on 127.0.0.1, tests/ipfs_testnode):
``add --only-hash`` must print the same CID, and ``dag/import`` of a CAR we wrote must give our root."""

from __future__ import annotations

import io
import json
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinner.blockstore import FsBlockstore
from pinner.unixfs import UnixfsParams, hash_file

pytestmark = [pytest.mark.ipfs, pytest.mark.slow]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.ipfs_testnode.peers import TestnodeMissing, require_jsipfs, start_peers, stop_peers

    try:
        require_jsipfs()
    except TestnodeMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    peers = start_peers(tmp_path_factory.mktemp("interop"), 1, prefix="cid")
    try:
        yield peers[0]
    finally:
        stop_peers(peers)


def _post_file(
    peer: Any, cmd: str, payload: bytes, timeout: float = 120.0, **params: str
) -> list[dict[str, Any]]:
    """A Kubo RPC call with one multipart file part (js-ipfs wants the part's Content-Type)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    url = f"{peer.api_url}/api/v0/{cmd}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


CASES = [
    ("empty", b"", 262144, 0),
    ("hello", b"hello world\n", 262144, 1),
    ("175 one-byte chunks: root over two nodes", os.urandom(175), 1, 0),
    ("depth 3: 174*174+1 one-byte chunks", os.urandom(174 * 174 + 1), 1, 1),
    ("1 MiB + 1, 1000-byte chunks", os.urandom(1024 * 1024 + 1), 1000, 0),
]


@pytest.mark.parametrize(("name", "data", "chunk", "version"), CASES, ids=[c[0] for c in CASES])
def test_only_hash_cid_matches_the_peer(peer: Any, name: str, data: bytes, chunk: int, version: int) -> None:
    ours = hash_file(io.BytesIO(data), UnixfsParams(chunk_size=chunk, cid_version=version)).cid
    theirs = _post_file(
        peer,
        "add",
        data,
        **{
            "only-hash": "true",
            "pin": "false",
            "cid-version": str(version),
            "raw-leaves": "true" if version == 1 else "false",
            "chunker": f"size-{chunk}",
            "cid-base": "base32" if version == 1 else "base58btc",
        },
    )
    assert theirs[-1]["Hash"] == str(ours), name


@pytest.mark.parametrize("version", [0, 1])
def test_peer_imports_our_car_with_the_same_root(peer: Any, tmp_path: Path, version: int) -> None:
    data = os.urandom(600_000)
    store = FsBlockstore(tmp_path / "store")
    writer = store.begin_file(UnixfsParams(chunk_size=65536, max_links=4, cid_version=version))
    writer.write(data)
    digest = writer.commit()
    car = b"".join(store.export_car(digest.cid))
    result = _post_file(peer, "dag/import", car, **{"cid-base": "base32" if version == 1 else "base58btc"})
    roots = [r["Root"]["Cid"]["/"] for r in result if "Root" in r]
    assert roots == [str(digest.cid)]
    url = f"{peer.api_url}/api/v0/cat?{urllib.parse.urlencode({'arg': str(digest.cid), 'timeout': '10s'})}"
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30) as resp:
        assert resp.read() == data
