"""The IPNS record spec's official test records get the right verdicts; our records pass a real peer.

Verdicts (../shared/conformance/README.md): v1-only invalid, v1+v2 valid, broken V1 value invalid,
broken V2 signature invalid, broken V1 signature valid (V1 is not what is checked), v2-only valid.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from multiformats import multibase

from registry.ipns.name import ipns_name, parse_ipns_name
from registry.ipns.record import make_record, validate_record
from registry.trust.errors import IpnsBadSignature, IpnsDataMismatch, IpnsRecordError, IpnsV1Only
from registry.trust.keys import generate_private_key, public_key_of

HERE = Path(__file__).parent
NOW = datetime(2026, 11, 25, tzinfo=UTC)
EXPECTED: dict[str, type[IpnsRecordError] | None] = {
    "v1": IpnsV1Only,
    "v1-v2": None,
    "v1-v2-broken-v1-value": IpnsDataMismatch,
    "v1-v2-broken-signature-v2": IpnsBadSignature,
    "v1-v2-broken-signature-v1": None,
    "v2": None,
}


def records() -> list[tuple[str, str, Path]]:
    out = []
    for path in sorted(HERE.glob("*.ipns-record")):
        name, kind = path.name.removesuffix(".ipns-record").split("_", 1)
        out.append((kind, name, path))
    return out


def test_all_six_records_are_here() -> None:
    assert sorted(kind for kind, _, _ in records()) == sorted(EXPECTED)


@pytest.mark.parametrize(("kind", "name", "path"), records(), ids=[r[0] for r in records()])
def test_official_record_verdict(kind: str, name: str, path: Path) -> None:
    expected = EXPECTED[kind]
    if expected is None:
        record = validate_record(name, path.read_bytes(), NOW)
        assert record.path.startswith("/ipfs/")
        assert record.name == name
        assert ipns_name(record.public_key) == name
        assert record.expires_at.year == 2123
    else:
        with pytest.raises(expected):
            validate_record(name, path.read_bytes(), NOW)


def test_names_of_official_records_round_trip() -> None:
    for _, name, _ in records():
        assert parse_ipns_name(name).canonical == name


# --- a real peer ---------------------------------------------------------------------------------
# js-ipfs 0.66 stores a dht/put locally without checking it, then validates the record with js-ipns
# (V2 signature, data, EOL) on every dht/get and name/resolve. Our test peers have no DHT neighbours,
# so "accepted" means: the same peer hands it back through its validator and resolves the name to
# our value, while a record signed by the wrong key is not handed back (the negative control).


@pytest.fixture(scope="module")
def jsipfs_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.ipfs_testnode.peers import TestnodeMissing, require_jsipfs, running_peers

    try:
        require_jsipfs()
    except TestnodeMissing as e:
        pytest.skip(f"no js-ipfs peer can be started here: {e}")
    with running_peers(tmp_path_factory.mktemp("ipns-peer"), 1, prefix="ipns") as peers:
        yield peers[0]


def _post(url: str, data: bytes = b"", ctype: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": ctype} if ctype else {}
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _dht_put(peer: Any, peer_id: str, record: bytes) -> None:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="record"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + record
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, text = _post(
        f"{peer.api_url}/api/v0/dht/put?arg=/ipns/{peer_id}",
        body,
        f"multipart/form-data; boundary={boundary}",
    )
    assert status == 200, text


def _peer_id(name: str) -> str:
    return multibase.get("base58btc").encode(bytes([0, 36]) + parse_ipns_name(name).digest)[1:]


@pytest.mark.ipfs
@pytest.mark.slow
def test_our_record_is_accepted_by_a_real_peer_and_resolves(jsipfs_peer: Any) -> None:
    key = generate_private_key()
    name = ipns_name(public_key_of(key))
    value = "/ipfs/bafkqaddwgevxmmraojswg33smq"
    record = make_record(key, value, 1, datetime.now(UTC) + timedelta(hours=24), 3600 * 10**9)
    _dht_put(jsipfs_peer, _peer_id(name), record)

    status, body = _post(f"{jsipfs_peer.api_url}/api/v0/dht/get?arg=/ipns/{name}&timeout=10s")
    assert status == 200, body
    events = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert any(base64.b64decode(e["Extra"]) == record for e in events if e.get("Extra")), events
    status, body = _post(f"{jsipfs_peer.api_url}/api/v0/name/resolve?arg={_peer_id(name)}&timeout=10s")
    assert status == 200 and json.loads(body)["Path"] == value, body


@pytest.mark.ipfs
@pytest.mark.slow
def test_a_real_peer_refuses_a_record_signed_by_another_key(jsipfs_peer: Any) -> None:
    owner, thief = generate_private_key(), generate_private_key()
    name = ipns_name(public_key_of(owner))
    forged = make_record(
        thief, "/ipfs/bafkqaddwgevxmmraojswg33smq", 1, datetime.now(UTC) + timedelta(hours=24), 0
    )
    _dht_put(jsipfs_peer, _peer_id(name), forged)
    status, _ = _post(f"{jsipfs_peer.api_url}/api/v0/dht/get?arg=/ipns/{name}&timeout=5s")
    assert status != 200
