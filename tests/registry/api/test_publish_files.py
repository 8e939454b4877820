"""A manifest's ``files`` (config.json, tokenizer.json...) are published, stored, served and replicated
exactly like its weight shards; bytes nobody references yet stay their uploader's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from registry.api.keys import SESSIONS, SHARD_FETCH
from registry.db.models import Manifest, Shard
from registry.replication.summary import pack_units
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry
from tests.registry.api.test_publish_fetch import FakeNode, claim_fetch, fake_node  # noqa: F401 (fixture)

SHARDS = [("model.safetensors", helpers.shard_bytes(5000, 1))]
CONFIG = b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n'
TOKENIZER = helpers.shard_bytes(3000, 7)
FILES = [("config.json", CONFIG), ("tokenizer.json", TOKENIZER)]


def _manifest(**extra: Any) -> dict[str, Any]:
    return helpers.manifest(SHARDS, files=[helpers.shard_entry(n, d) for n, d in FILES], **extra)


async def _upload_all(reg: Registry, tok: str) -> None:
    for _, data in SHARDS + FILES:
        r = await helpers.upload(reg.client, tok, data)
        assert r.status in (200, 201), await r.text()


async def test_files_are_stored_served_listed_and_replicated_like_shards(reg: Registry) -> None:
    await _upload_all(reg, reg.alice)
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": _manifest()})
    assert r.status == 201, await r.text()
    out = await r.json()
    assert out["state"] == "available"
    cid = out["cid"]
    detail = await (await reg.client.get(f"/v1/packs/{cid}")).json()
    assert [s["filename"] for s in detail["shards"]] == ["model.safetensors"]
    assert [(f["filename"], f["role"], f["position"]) for f in detail["files"]] == [
        ("config.json", "file", 1),
        ("tokenizer.json", "file", 2),
    ]
    assert detail["total_size"] == 5000 + len(CONFIG) + len(TOKENIZER)
    assert detail["shard_count"] == 1
    served = await reg.client.get(f"/v1/packs/{cid}/shards/config.json")
    assert served.status == 200 and await served.read() == CONFIG
    async with reg.client.app[SESSIONS]() as s:
        roles = [
            (x.filename, x.role) for x in (await s.execute(select(Shard).order_by(Shard.position))).scalars()
        ]
        units = await pack_units(s, await s.get(Manifest, cid))
    assert roles == [("model.safetensors", "shard"), ("config.json", "file"), ("tokenizer.json", "file")]
    assert [(u.kind, u.name) for u in units] == [
        ("shard", "model.safetensors"),
        ("file", "config.json"),
        ("file", "tokenizer.json"),
        ("manifest", "manifest"),
    ]
    assert helpers.cid_of(TOKENIZER) in {u.cid for u in units}


async def test_a_file_not_uploaded_is_missing_and_nothing_is_stored(reg: Registry) -> None:
    for _, data in SHARDS + FILES[:1]:
        await helpers.upload(reg.client, reg.alice, data)
    before = await helpers.counts(reg.client)
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": _manifest()})
    body = (await r.json())["error"]
    assert r.status == 409 and body["code"] == "missing_shards"
    assert "tokenizer.json" in body["message"]
    assert await helpers.counts(reg.client) == before


async def test_a_file_whose_bytes_differ_is_refused_naming_it(reg: Registry) -> None:
    await _upload_all(reg, reg.alice)
    m = _manifest()
    m["files"][0]["size"] = len(CONFIG) + 1
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": m})
    body = (await r.json())["error"]
    assert r.status == 422 and body["code"] == "shard_mismatch"
    assert "file 'config.json'" in body["message"]


async def test_unreferenced_bytes_of_another_publisher_cannot_be_referenced(reg: Registry) -> None:
    bob = await helpers.token(reg.client.app, "bob", ["beta"])
    await _upload_all(reg, reg.alice)
    secret = helpers.shard_bytes(4000, 99)  # bob's, in no pack yet
    assert (await helpers.upload(reg.client, bob, secret)).status == 201
    before = await helpers.counts(reg.client)
    for where in ("shards", "files"):
        m = _manifest()
        m[where].append(helpers.shard_entry(f"stolen-{where}.bin", secret))
        r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": m})
        body = (await r.json())["error"]
        assert r.status == 403 and body["code"] == "forbidden", body
        assert f"stolen-{where}.bin" in body["message"]
        assert await helpers.counts(reg.client) == before
    # blob stays unreadable to alice
    assert (
        await reg.client.get(f"/v1/blobs/{helpers.cid_of(secret)}", headers=helpers.bearer(reg.alice))
    ).status == 404
    # once bob's own pack references them, they are public content anyone may reference
    # (carol uploads the same bytes herself: then she holds them too, and may publish them at once)
    carol = await helpers.token(reg.client.app, "carol", ["gamma"])
    assert (await helpers.upload(reg.client, carol, secret)).status == 200
    r = await helpers.publish(
        reg.client, carol, "gamma/tiny", {"manifest": helpers.manifest([("w.safetensors", secret)])}
    )
    assert r.status == 201, await r.text()
    r = await helpers.publish(
        reg.client,
        bob,
        "beta/tiny",
        {"manifest": helpers.manifest([("w.safetensors", secret)])},
    )
    assert r.status == 201, await r.text()
    m = _manifest()
    m["files"].append(helpers.shard_entry("shared.bin", secret))
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": m})
    assert r.status == 201, await r.text()


async def test_a_global_admin_may_reference_anyones_unreferenced_bytes(reg: Registry) -> None:
    await _upload_all(reg, reg.alice)  # alice's, in no pack yet
    r = await helpers.publish(reg.client, reg.admin, "acme/tiny", {"manifest": _manifest()})
    assert r.status == 201, await r.text()


async def test_a_file_published_by_cid_is_fetched_verified_and_served(
    reg: Registry,
    fake_node: FakeNode,  # noqa: F811 (the imported fixture)
) -> None:
    await fake_node({helpers.cid_of(TOKENIZER): TOKENIZER})
    for _, data in SHARDS + FILES[:1]:
        await helpers.upload(reg.client, reg.alice, data)
    r = await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": _manifest()})
    assert r.status == 201, await r.text()
    out = await r.json()
    assert out["state"] == "received"
    await reg.client.app[SHARD_FETCH].handle_fetch(await claim_fetch(reg))
    detail = await (await reg.client.get(f"/v1/packs/{out['cid']}")).json()
    assert detail["state"] == "available"
    served = await reg.client.get(f"/v1/packs/{out['cid']}/shards/tokenizer.json")
    assert served.status == 200 and await served.read() == TOKENIZER
