"""``GET /metrics`` after real requests: route-template labels, histograms, packs by state, bytes, process.

Counters are process-wide (other tests in this process add to them), so each test compares two scrapes.
"""

from __future__ import annotations

import uuid

from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import update

from pinner.states import NodeKind, NodeState
from registry.api.keys import JOB_QUEUE, SESSIONS, SHARD_FETCH
from registry.db.models import IpfsNode, Pack, PackState
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry
from tests.registry.metrics.scrape import scrape

REQS = "modelpack_http_requests_total"
DUR = "modelpack_http_request_duration_seconds"
PACK_ROUTE = "/v1/packs/{cid}"
MISSING = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


async def test_requests_are_counted_under_their_route_template(reg: Registry) -> None:
    labels = {"route": PACK_ROUTE, "method": "GET", "status": "404"}
    before = await scrape(reg.client)
    for _ in range(3):
        assert (await reg.client.get(f"/v1/packs/{MISSING}")).status == 404
    after = await scrape(reg.client)
    assert after.get(REQS, **labels) - before.get(REQS, **labels) == 3
    assert after.get(f"{DUR}_count", **labels) - before.get(f"{DUR}_count", **labels) == 3
    assert (
        after.get(f"{DUR}_bucket", le="+Inf", **labels) - before.get(f"{DUR}_bucket", le="+Inf", **labels)
        == 3
    )
    assert after.get(f"{DUR}_sum", **labels) > before.get(f"{DUR}_sum", **labels)
    buckets = sorted(
        (
            (float(dict(k)["le"]), v)
            for k, v in after.series(f"{DUR}_bucket").items()
            if k >= set(labels.items())
        ),
    )
    assert len(buckets) > 10 and buckets[-1][0] == float("inf")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    # The first scrape itself was counted, under its own template.
    assert after.get(REQS, route="/metrics", method="GET", status="200") >= 1
    # A publish: the route's template names its parameters, never the values.
    pack = await helpers.upload_and_publish(
        reg.client, reg.alice, "acme/tiny", [("a.safetensors", b"z" * 300)]
    )
    final = await scrape(reg.client)
    assert final.get(REQS, route="/v1/models/{namespace}/{model}/packs", method="POST", status="201") >= 1
    assert final.get(REQS, route="/v1/blobs/{cid}", method="PUT", status="201") >= 1
    assert pack["cid"] not in final.text and "acme/tiny" not in final.text


async def test_hostile_urls_and_methods_add_no_label_values(reg: Registry) -> None:
    templates = {r.canonical for r in reg.client.app.router.resources()} | {"unmatched"}
    marker = uuid.uuid4().hex
    before = await scrape(reg.client)
    hostile = [
        f"/{marker}",
        f"/v1/{marker}/../../etc/passwd",
        f"/v1/packs/{marker}",  # a bad CID: a 400 under the route's template
        f"/v1/packs/{marker}/shards/{marker}%00{'A' * 2000}",
        f"/ipfs/{marker}",
        f"/v1/models/{marker}/{marker}/pointers/{marker}",
    ]
    for path in hostile:
        assert (await reg.client.get(path)).status >= 400, path
    r = await reg.client.request(f"X{marker.upper()[:10]}", "/v1/models")
    assert r.status in (400, 405)
    after = await scrape(reg.client)
    routes = after.label_values(REQS, "route")
    assert routes <= templates, routes - templates
    assert after.label_values(REQS, "method") <= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "other",
    }
    assert marker not in after.text and marker.upper()[:10] not in after.text
    assert len(after.series(REQS)) - len(before.series(REQS)) <= 8  # new (route, method, status) triples only
    assert (
        after.get(REQS, route="unmatched", method="GET", status="404")
        - before.get(REQS, route="unmatched", method="GET", status="404")
        >= 1
    )
    assert (
        after.get(REQS, route=PACK_ROUTE, method="GET", status="400")
        - before.get(REQS, route=PACK_ROUTE, method="GET", status="400")
        == 1
    )


async def test_packs_by_state_come_from_the_index(reg: Registry) -> None:
    first = await scrape(reg.client)
    assert {first.get("modelpack_packs", state=st.value) for st in PackState} == {0.0}
    assert first.label_values("modelpack_packs", "state") == {st.value for st in PackState}
    one = await helpers.upload_and_publish(reg.client, reg.alice, "acme/a", [("a.safetensors", b"a" * 100)])
    await helpers.upload_and_publish(reg.client, reg.alice, "acme/b", [("b.safetensors", b"b" * 100)])
    async with reg.client.app[SESSIONS]() as s, s.begin():
        await s.execute(update(Pack).where(Pack.cid == one["cid"]).values(state=PackState.REJECTED))
    now = await scrape(reg.client)
    assert now.get("modelpack_packs", state="available") == 1
    assert now.get("modelpack_packs", state="rejected") == 1
    assert now.get("modelpack_packs", state="curated") == 0


async def test_upload_ingest_and_pull_bytes_are_counted(reg: Registry) -> None:
    data = helpers.shard_bytes(300_000, seed=11)
    before = await scrape(reg.client)
    await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", [("model.safetensors", data)])
    mid = await scrape(reg.client)
    assert mid.get("modelpack_upload_bytes_total") - before.get("modelpack_upload_bytes_total") == len(data)
    ingested = mid.get("modelpack_ingest_bytes_total", source="upload")
    assert ingested - before.get("modelpack_ingest_bytes_total", source="upload") == len(data)

    cid = helpers.cid_of(data)
    pack = (await (await reg.client.get("/v1/models/acme/tiny/pointers/latest")).json())["cid"]
    r = await reg.client.get(f"/v1/packs/{pack}/shards/model.safetensors")
    assert r.status == 200 and await r.read() == data
    assert (await reg.client.head(f"/v1/packs/{pack}/shards/model.safetensors")).status == 200
    r = await reg.client.get(f"/ipfs/{cid}")
    assert r.status == 200 and await r.read() == data
    car = await (await reg.client.get(f"/ipfs/{cid}?format=car")).read()
    assert (await reg.client.head(f"/ipfs/{cid}")).status == 200
    after = await scrape(reg.client)
    pulled = {
        via: after.get("modelpack_pull_bytes_total", via=via) - mid.get("modelpack_pull_bytes_total", via=via)
        for via in ("api", "gateway")
    }
    assert pulled == {"api": len(data), "gateway": len(data) + len(car)}
    assert after.get("modelpack_upload_bytes_total") == mid.get("modelpack_upload_bytes_total")


async def test_a_refused_upload_counts_what_was_received_but_ingests_nothing(reg: Registry) -> None:
    data = helpers.shard_bytes(5000, seed=12)
    before = await scrape(reg.client)
    r = await helpers.upload(reg.client, reg.alice, data, cid=helpers.cid_of(b"other bytes"))
    assert r.status == 422, await r.text()
    after = await scrape(reg.client)
    assert after.get("modelpack_upload_bytes_total") - before.get("modelpack_upload_bytes_total") == len(data)
    ingest = "modelpack_ingest_bytes_total"
    assert after.get(ingest, source="upload") == before.get(ingest, source="upload")


async def test_process_metrics_are_exported(reg: Registry) -> None:
    got = await scrape(reg.client)
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ):
        assert got.get(name) > 0, name
    assert got.get("modelpack_sse_subscribers") >= 0 and "modelpack_sse_subscribers" in got.types
    assert got.types["modelpack_webhook_deliveries"] == "counter"
    assert got.types[DUR] == "histogram" and got.types["modelpack_validation_duration_seconds"] == "histogram"


async def test_bytes_fetched_from_a_node_count_as_ingested(reg: Registry) -> None:
    uploaded, on_node = helpers.shard_bytes(2000, seed=13), helpers.shard_bytes(70_000, seed=14)

    async def cat(request: web.Request) -> web.Response:
        assert request.query["arg"] == helpers.cid_of(on_node)
        return web.Response(body=on_node, content_type="text/plain")

    node = web.Application()
    node.router.add_post("/api/v0/cat", cat)
    async with TestServer(node, host="127.0.0.1") as server:
        async with reg.client.app[SESSIONS]() as s, s.begin():
            url = f"http://127.0.0.1:{server.port}"
            s.add(IpfsNode(name="fake", kind=NodeKind.KUBO, url=url, state=NodeState.UP))
        assert (await helpers.upload(reg.client, reg.alice, uploaded)).status == 201
        shards = [("a.safetensors", uploaded), ("b.safetensors", on_node)]
        r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": helpers.manifest(shards)})
        assert r.status == 201 and (await r.json())["state"] == "received"
        before = await scrape(reg.client)
        job = await reg.client.app[JOB_QUEUE].claim(["fetch"], "test")
        assert job is not None
        await reg.client.app[SHARD_FETCH].handle_fetch(job)
    after = await scrape(reg.client)
    ingest = "modelpack_ingest_bytes_total"
    assert after.get(ingest, source="fetch") - before.get(ingest, source="fetch") == len(on_node)
    assert after.get(ingest, source="upload") == before.get(ingest, source="upload")
    assert after.get("modelpack_packs", state="available") == 1
