"""Nodes, replica matrix, replication status and /metrics over HTTP, on a live app with a fresh database."""

from __future__ import annotations

import pytest

from tests.registry.api import helpers
from tests.registry.replication.conftest import Api

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def add(api: Api, body: dict[str, object], tok: str | None = None) -> tuple[int, dict[str, object]]:
    r = await api.client.post("/v1/nodes", json=body, headers=helpers.bearer(tok or api.admin))
    return r.status, await r.json()


async def test_without_nodes_status_says_the_blockstore_is_the_one_replica(api: Api) -> None:
    r = await api.client.get("/v1/replication/status")
    body = await r.json()
    assert r.status == 200 and body["embedded_only"] and "embedded blockstore" in body["message"]
    pack = await helpers.upload_and_publish(
        api.client, api.alice, "acme/tiny", [("model-00001-of-00001.safetensors", b"x" * 5000)]
    )
    r = await api.client.get(f"/v1/packs/{pack['cid']}/replicas")
    matrix = await r.json()
    assert r.status == 200 and matrix["satisfied"] and matrix["embedded_only"]
    assert [u["kind"] for u in matrix["units"]] == ["shard", "manifest"]
    assert all(u["pinned"] == 1 and u["min"] == 1 for u in matrix["units"])


async def test_node_lifecycle_add_list_drain_remove(api: Api) -> None:
    status, node = await add(api, {"name": "n1", "url": "http://127.0.0.1:9/", "tags": {"zone": "a"}})
    assert status == 201 and node["url"] == "http://127.0.0.1:9" and node["tags"] == {"zone": "a"}
    assert node["state"] == "down" and "node_unreachable" in str(node["last_error"])  # probed at once
    r = await api.client.get("/v1/nodes")
    assert [n["name"] for n in (await r.json())["nodes"]] == ["n1"]
    r = await api.client.post("/v1/nodes/n1/drain", json={}, headers=helpers.bearer(api.admin))
    assert r.status == 200 and (await r.json())["draining"] is True
    r = await api.client.delete("/v1/nodes/n1", headers=helpers.bearer(api.admin))
    assert r.status == 200 and (await r.json()) == {"name": "n1", "replicas_dropped": 0}
    r = await api.client.get("/v1/nodes/n1")
    assert r.status == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "x", "url": "ftp://127.0.0.1/"}, 400, "bad_request"),
        ({"name": "x", "url": "http://10.1.2.3:5001"}, 400, "bad_request"),
        ({"name": "x", "url": "http://127.0.0.1:5001", "kind": "embedded"}, 400, "bad_request"),
        ({"name": "x", "url": "http://127.0.0.1:5001", "kind": "pinning-service"}, 400, "bad_request"),
        ({"name": "Bad Name", "url": "http://127.0.0.1:5001"}, 400, "invalid_name"),
        ({"name": "x", "url": "http://127.0.0.1:5001", "extra": 1}, 400, "bad_request"),
    ],
)
async def test_bad_node_input_is_refused_with_a_reason(
    api: Api, body: dict[str, object], status: int, code: str
) -> None:
    got, err = await add(api, body)
    assert got == status and err["error"]["code"] == code  # type: ignore[index]


async def test_only_admins_manage_nodes_and_names_are_unique(api: Api) -> None:
    got, err = await add(api, {"name": "x", "url": "http://127.0.0.1:9"}, tok=api.alice)
    assert got == 403
    assert (await add(api, {"name": "x", "url": "http://127.0.0.1:9"}))[0] == 201
    got, err = await add(api, {"name": "y", "url": "http://127.0.0.1:9"})
    assert got == 409 and "already registered" in err["error"]["message"]  # type: ignore[index]


async def test_metrics_export_replicas_nodes_and_job_queue(api: Api) -> None:
    await helpers.upload_and_publish(api.client, api.alice, "acme/tiny", [("a.safetensors", b"y" * 100)])
    await add(api, {"name": "n1", "url": "http://127.0.0.1:9"})
    r = await api.client.get("/metrics")
    text = await r.text()
    assert r.status == 200 and r.content_type == "text/plain"
    assert 'modelpack_jobs{kind="replicate",state="queued"} 1.0' in text
    assert 'modelpack_node_up{node="n1"} 0.0' in text
    assert 'modelpack_nodes{state="down"} 1.0' in text
    assert "modelpack_jobs_oldest_queued_age_seconds" in text


async def test_replica_matrix_of_an_unknown_pack_is_404(api: Api) -> None:
    r = await api.client.get("/v1/packs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy/replicas")
    assert r.status == 404
    r = await api.client.get("/v1/packs/not-a-cid/replicas")
    assert r.status == 400
