"""Bad input to the Pinning Service API: a spec-shaped 400 naming the value (bounded), nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.registry.pinning.conftest import Psa, raw_cid

GOOD = raw_cid(b"good")
PEER = "/ip4/127.0.0.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
SHA512_CID = "bafkrgqhhyivzstcz3hhswshfjgy6ertgmnqeleynhwt4dlfsthi4hn7zgh4uvlsb5xncykzapi3ocd4lduuoamk7ukmi5erxfkfcvwmvk2wbw"

BAD_PINS: list[tuple[dict[str, Any], str]] = [
    ({"cid": "not-a-cid"}, "not-a-cid"),
    ({"cid": "x" * 5000}, "more characters"),
    ({"cid": SHA512_CID}, "sha2-512"),
    ({"cid": 7}, "7"),
    ({"cid": GOOD, "origins": [PEER.replace("4001", str(i)) for i in range(21)]}, "21"),
    ({"cid": GOOD, "origins": ["/ip4/999.0.0.1/tcp/1"]}, "/ip4/999.0.0.1/tcp/1"),
    ({"cid": GOOD, "origins": ["nonsense"]}, "nonsense"),
    ({"cid": GOOD, "meta": {"k": "v" * 1000}}, "1000"),
    ({"cid": GOOD, "meta": {"k": 1}}, "meta"),
    ({"cid": GOOD, "meta": ["k"]}, "meta"),
    ({"cid": GOOD, "meta": {"replication_min": "lots"}}, "lots"),
    ({"cid": GOOD, "name": "n" * 256}, "255"),
    ({"cid": GOOD, "colour": "red"}, "colour"),
]


async def _count(psa: Psa) -> int:
    r = await psa.client.get(
        "/psa/pins", params={"status": "queued,pinning,pinned,failed"}, headers=psa.h(psa.alice)
    )
    return int((await r.json())["count"])


@pytest.mark.parametrize(("body", "named"), BAD_PINS)
async def test_bad_pin_is_400_naming_the_value(psa: Psa, body: dict[str, Any], named: str) -> None:
    r = await psa.client.post("/psa/pins", json=body, headers=psa.h(psa.alice))
    assert r.status == 400, await r.text()
    err = (await r.json())["error"]
    assert err["reason"] and named in err["details"] and len(err["details"]) < 1000
    assert await _count(psa) == 0


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"limit": "0"}, "'0'"),
        ({"limit": "1001"}, "1001"),
        ({"limit": "ten"}, "ten"),
        ({"match": "fuzzy", "name": "x"}, "fuzzy"),
        ({"status": "lost"}, "lost"),
        ({"cid": ",".join(raw_cid(b"%d" % i) for i in range(11))}, "11"),
        ({"cid": "nope"}, "nope"),
        ({"before": "yesterday"}, "yesterday"),
        ({"meta": "{not json"}, "{not json"),
        ({"meta": '{"a": 1}'}, "meta"),
        ({"name": "n" * 300}, "255"),
    ],
)
async def test_bad_listing_query_is_400_naming_the_value(psa: Psa, query: dict[str, str], named: str) -> None:
    r = await psa.client.get("/psa/pins", params=query, headers=psa.h(psa.alice))
    assert r.status == 400, await r.text()
    err = (await r.json())["error"]
    assert err["reason"] and named in err["details"]


async def test_a_non_object_body_is_400(psa: Psa) -> None:
    r = await psa.client.post("/psa/pins", data=b"[1]", headers=psa.h(psa.alice))
    assert r.status == 400 and (await r.json())["error"]["reason"] == "BAD_REQUEST"
