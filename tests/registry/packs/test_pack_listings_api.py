"""One CID, several models (issue 12 item 3): a bare-named manifest published first as ``evil/X`` never blocks
``acme/X``; each listing has its own state and pointers; ``/v1/packs/{cid}`` asks which one when it must."""

from __future__ import annotations

from typing import Any

from tests.registry.api import helpers
from tests.registry.api.conftest import Registry, reg  # noqa: F401  (the app fixture, both databases)

SHARDS = [("model.safetensors", helpers.shard_bytes(1500, 12))]
BARE = helpers.manifest(SHARDS, model_name="tiny")  # publishes as any ns/tiny


async def _publish(r: Registry, tok: str, name: str) -> tuple[int, dict[str, Any]]:
    for _, data in SHARDS:
        up = await helpers.upload(r.client, tok, data)
        assert up.status in (200, 201), await up.text()
    resp = await helpers.publish(r.client, tok, name, {"manifest": BARE})
    return resp.status, await resp.json()


async def _get(r: Registry, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    resp = await r.client.get(path, params=params)
    return resp.status, await resp.json()


async def _squatted(r: Registry) -> tuple[str, str]:
    """mallory publishes the bare-named manifest as evil/tiny first; returns (mallory's token, the CID)."""
    mallory = await helpers.token(r.client.app, "mallory", ["evil"])
    status, out = await _publish(r, mallory, "evil/tiny")
    assert status == 201, out
    return mallory, out["cid"]


async def test_the_owner_publishes_the_bytes_someone_listed_first(reg: Registry) -> None:  # noqa: F811
    _, cid = await _squatted(reg)
    status, out = await _publish(reg, reg.alice, "acme/tiny")
    assert status == 201, out  # was 409 "already published as evil/tiny" forever
    assert (out["cid"], out["created"], out["namespace"], out["state"]) == (cid, True, "acme", "available")
    assert out["pointers"] == {"latest": cid}

    status, again = await _publish(reg, reg.alice, "acme/tiny")  # the same model: idempotent as before
    assert status == 200 and again["created"] is False

    counts = await helpers.counts(reg.client)
    assert counts["packs"] == 2 and counts["shards"] == 1  # two listings, one content
    for model in ("acme/tiny", "evil/tiny"):
        status, body = await _get(reg, f"/v1/models/{model}/pointers/latest")
        assert status == 200 and body["cid"] == cid
    status, hist = await _get(reg, "/v1/models/acme/tiny/pointers/latest/history")
    assert status == 200 and [(h["from_cid"], h["to_cid"], h["actor"]) for h in hist["items"]] == [
        (None, cid, "alice")
    ]  # acme's own move only: evil's listing touched nothing of acme's


async def test_several_listings_are_ambiguous_until_model_chooses(reg: Registry) -> None:  # noqa: F811
    _, cid = await _squatted(reg)
    assert (await _publish(reg, reg.alice, "acme/tiny"))[0] == 201

    for path in ("", "/history", "/validation", "/trust"):
        status, body = await _get(reg, f"/v1/packs/{cid}{path}")
        err = body["error"]
        assert status == 409 and err["code"] == "ambiguous_pack", (path, body)
        assert err["details"]["models"] == ["evil/tiny", "acme/tiny"]
        assert "?model=" in err["message"] and "acme/tiny" in err["message"]

    status, acme = await _get(reg, f"/v1/packs/{cid}", model="acme/tiny")
    assert status == 200 and (acme["namespace"], acme["model"]) == ("acme", "tiny")
    assert acme["pointers"] == ["latest"] and acme["shards"][0]["filename"] == "model.safetensors"
    status, evil = await _get(reg, f"/v1/packs/{cid}", model="evil/tiny")
    assert status == 200 and evil["namespace"] == "evil"
    status, hist = await _get(reg, f"/v1/packs/{cid}/history", model="acme/tiny")
    assert status == 200 and [h["to"] for h in hist["items"]] == ["available", "received"]

    status, body = await _get(reg, f"/v1/packs/{cid}", model="beta/tiny")
    assert status == 404 and "beta/tiny" in body["error"]["message"]
    status, body = await _get(reg, f"/v1/packs/{cid}", model="not-a-model")
    assert status == 400 and body["error"]["code"] == "invalid_name"

    # the content is the same whichever model lists it: no choice needed
    resp = await reg.client.get(f"/v1/packs/{cid}/manifest")
    assert resp.status == 200
    resp = await reg.client.get(f"/v1/packs/{cid}/shards/model.safetensors")
    assert resp.status == 200 and await resp.read() == SHARDS[0][1]


async def test_a_pointer_names_only_its_own_models_listing(reg: Registry) -> None:  # noqa: F811
    _, cid = await _squatted(reg)
    resp = await reg.client.put(
        "/v1/models/acme/tiny/pointers/stable", json={"cid": cid}, headers=helpers.bearer(reg.alice)
    )
    assert resp.status in (404, 409)  # acme has no such model (or listing) yet: evil's listing is not acme's
    assert (await _publish(reg, reg.alice, "acme/tiny"))[0] == 201
    resp = await reg.client.put(
        "/v1/models/acme/tiny/pointers/stable", json={"cid": cid}, headers=helpers.bearer(reg.alice)
    )
    assert resp.status == 200, await resp.text()
    status, evil = await _get(reg, f"/v1/packs/{cid}", model="evil/tiny")
    assert status == 200 and evil["pointers"] == ["latest"]  # acme's tag is not evil's
