"""Names as the Hugging Face Hub has them (issue #16): namespaces and models keep their case, are unique and looked
up case-insensitively everywhere (API, pointers, the Hub endpoint, the CLI's refs), shown as created."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from registry.api.keys import SESSIONS
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

DATA = helpers.shard_bytes(4000, 41)


async def _publish(reg: Registry, tok: str, name: str, data: bytes = DATA) -> dict[str, object]:
    return await helpers.upload_and_publish(reg.client, tok, name, [("model.safetensors", data)])


@pytest.mark.parametrize("name", ["acme/ProductionTransformer-RAGE", "HuggingFaceTB/SmolLM2-135M-Instruct"])
async def test_hub_style_names_publish_and_resolve_in_any_case(reg: Registry, name: str) -> None:
    ns = name.split("/")[0]
    tok = reg.alice if ns == "acme" else await helpers.token(reg.client.app, "hf", [ns])
    out = await _publish(reg, tok, name)
    assert f"{out['namespace']}/{out['model']}" == name  # shown as created
    for asked in (name, name.lower(), name.upper()):
        r = await reg.client.get(f"/v1/models/{asked}/pointers/latest")
        assert r.status == 200, (asked, await r.text())
        body = await r.json()
        assert body["cid"] == out["cid"] and f"{body['namespace']}/{body['model']}" == name
        r = await reg.client.get(f"/api/models/{asked}/revision/latest")
        assert (await r.json())["id"] == name
        r = await reg.client.get(f"/{asked}/resolve/latest/model.safetensors")
        assert r.status == 200 and await r.read() == DATA
        r = await reg.client.get(f"/v1/packs/{out['cid']}", params={"model": asked})
        assert r.status == 200 and (await r.json())["model"] == name.split("/")[1]
    listed = await (await reg.client.get("/v1/models", params={"namespace": ns.lower()})).json()
    assert [f"{m['namespace']}/{m['name']}" for m in listed["items"]] == [name]
    prefix = name.split("/")[1][:4]
    for asked in (prefix.lower(), prefix.upper()):  # the name search is case-blind too (web page and API)
        found = await (await reg.client.get("/v1/models", params={"prefix": asked})).json()
        assert [f"{m['namespace']}/{m['name']}" for m in found["items"]] == [name], asked


async def test_two_models_differing_only_in_case_cannot_coexist(reg: Registry) -> None:
    first = await _publish(reg, reg.alice, "acme/Tiny")
    second = await _publish(reg, reg.alice, "acme/tiny", helpers.shard_bytes(4000, 42))
    assert (second["namespace"], second["model"]) == ("acme", "Tiny")  # the same model, as created
    versions = await (await reg.client.get("/v1/models/ACME/TINY/packs")).json()
    assert {v["cid"] for v in versions["items"]} == {first["cid"], second["cid"]}
    listed = await (await reg.client.get("/v1/models")).json()
    assert [m["name"] for m in listed["items"]] == ["Tiny"]
    assert {v["model"] for v in versions["items"]} == {"Tiny"}
    page = await reg.client.get("/ui/models/ACME/tiny")  # the web page finds it and shows the created case
    assert page.status == 200 and "acme/Tiny" in await page.text()
    # the database itself refuses a second spelling (migration 0009's unique index on lower(name))
    async with reg.client.app[SESSIONS]() as s:
        ns_id = (await s.execute(text("SELECT id FROM namespaces WHERE name = 'acme'"))).scalar_one()
    with pytest.raises(IntegrityError):
        async with reg.client.app[SESSIONS]() as s, s.begin():
            await s.execute(
                text(
                    "INSERT INTO models (namespace_id, name, created_at) VALUES (:n, 'TINY', CURRENT_TIMESTAMP)"
                ),
                {"n": ns_id},
            )
    with pytest.raises(IntegrityError):
        async with reg.client.app[SESSIONS]() as s, s.begin():
            await s.execute(
                text(
                    "INSERT INTO namespaces (name, required_signatures, created_at)"
                    " VALUES ('ACME', 1, CURRENT_TIMESTAMP)"
                )
            )


async def test_a_token_for_a_namespace_covers_it_in_any_case(reg: Registry) -> None:
    tok = await helpers.token(reg.client.app, "bob", ["Lab"])
    out = await _publish(reg, tok, "lab/Model-X")
    assert out["namespace"] == "Lab"
    r = await reg.client.put(
        "/v1/models/LAB/model-x/pointers/stable", json={"cid": out["cid"]}, headers=helpers.bearer(tok)
    )
    assert r.status == 200, await r.text()
    r = await reg.client.get("/v1/models/lab/MODEL-X/pointers/stable")
    assert (await r.json())["cid"] == out["cid"]


@pytest.mark.parametrize("bad", ["acme/x--y", "acme/-x", "acme/x.", "acme/" + "x" * 97])
async def test_names_the_hub_refuses_are_refused(reg: Registry, bad: str) -> None:
    r = await helpers.publish(
        reg.client, reg.alice, bad, {"manifest": helpers.manifest([("m.safetensors", DATA)])}
    )
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_name"
