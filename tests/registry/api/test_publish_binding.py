"""A manifest is bound to the model it names (issue 12 item 3): ``ns/model`` exactly, a bare name as the model part."""

from __future__ import annotations

import pytest

from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARDS = [("model.safetensors", helpers.shard_bytes(2000, 7))]


async def _upload(reg: Registry, tok: str) -> None:
    for _, data in SHARDS:
        r = await helpers.upload(reg.client, tok, data)
        assert r.status in (200, 201), await r.text()


@pytest.mark.parametrize(
    ("model_name", "target"),
    [
        ("acme/experimental", "acme/prod-model"),
        ("beta/tiny", "acme/tiny"),
        ("tiny", "acme/other"),
        ("\u212ainy", "acme/kiny"),  # KELVIN SIGN lowercases to 'k': only ASCII letters are folded
    ],
)
async def test_a_manifest_naming_another_model_is_refused(
    reg: Registry, model_name: str, target: str
) -> None:
    await _upload(reg, reg.alice)
    body = {"manifest": helpers.manifest(SHARDS, model_name=model_name)}
    r = await helpers.publish(reg.client, reg.alice, target, body)
    err = (await r.json())["error"]
    assert r.status == 422 and err["code"] == "model_name_mismatch"
    assert model_name in err["message"] and target in err["message"]
    assert err["details"] == {"model_name": model_name, "target": target}
    assert (await helpers.counts(reg.client))["packs"] == 0


async def test_a_seed_format_bare_name_publishes_under_the_namespace(reg: Registry) -> None:
    await _upload(reg, reg.alice)
    body = {"manifest": helpers.manifest(SHARDS, model_name="ProductionTransformer-RAGE")}
    r = await helpers.publish(reg.client, reg.alice, "acme/productiontransformer-rage", body)
    assert r.status == 201, await r.text()  # registry names are lowercase: ASCII letters compare case-blind
    out = await r.json()
    assert (out["namespace"], out["model"]) == ("acme", "productiontransformer-rage")


async def test_someone_who_sees_a_manifest_first_cannot_squat_it(reg: Registry) -> None:
    bob = await helpers.token(reg.client.app, "bob", ["beta"])
    await _upload(reg, bob)
    body = {"manifest": helpers.manifest(SHARDS, model_name="acme/tiny")}
    r = await helpers.publish(reg.client, bob, "beta/tiny", body)
    assert r.status == 422 and (await r.json())["error"]["code"] == "model_name_mismatch"
    await _upload(
        reg, reg.alice
    )  # bytes no pack uses yet are their uploaders' own (tests/…/test_publish_files.py)
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", body)
    assert r.status == 201, await r.text()


async def test_a_long_model_name_is_echoed_bounded(reg: Registry) -> None:
    await _upload(reg, reg.alice)
    body = {"manifest": helpers.manifest(SHARDS, model_name="x" * 5000)}
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", body)
    assert r.status in (400, 422)
    assert len(await r.text()) < 2000
