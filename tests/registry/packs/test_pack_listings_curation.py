"""Per-listing curation (issue 12 item 3): the same bytes listed as ``evil/tiny`` and ``acme/tiny`` are judged
once (validation is per content) but trusted, curated and un-curated per listing, by each namespace's policy."""

from __future__ import annotations

from pathlib import Path

from registry.api.keys import BLOCKSTORE
from registry.db.listings import find_listing
from registry.db.models import Pack, PackState
from registry.gate.validation import ValidationService
from registry.names import ModelRef
from tests.registry.api import helpers
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv, env  # noqa: F401  (the gate's app fixture, both databases)

ACME, EVIL = ModelRef("acme", "tiny"), ModelRef("evil", "tiny")


def _bare_pack(env: GateEnv, seed: int = 3) -> Path:  # noqa: F811
    """A pack whose manifest names the bare model ``tiny`` (publishes as any ns/tiny), signed by acme's key."""
    pack = packs.make_pack(env.tmp / f"bare-{seed}", seed=seed)
    manifest = packs.manifest_of(pack)
    manifest["model_name"] = "tiny"
    packs.write_manifest(pack, manifest)
    packs.sign(pack, env.key)
    return pack


async def _publish(env: GateEnv, pack: Path, tok: str, name: str) -> str:  # noqa: F811
    for _, data in packs.shard_files(pack):
        r = await helpers.upload(env.client, tok, data, cid=packs.cid_of(data))
        assert r.status in (200, 201), await r.text()
    r = await helpers.publish(env.client, tok, name, {"manifest": packs.manifest_of(pack)})
    assert r.status == 201, await r.text()
    cid: str = (await r.json())["cid"]
    return cid


async def _listing(env: GateEnv, cid: str, model: ModelRef) -> Pack:  # noqa: F811
    async with env.sessions() as s:
        return await find_listing(s, cid, model)


async def _curated(env: GateEnv, model: str) -> str | None:  # noqa: F811
    status, body = await env.get(f"/v1/models/{model}/pointers/curated")
    return body["cid"] if status == 200 else None


def _counting_gate(env: GateEnv) -> tuple[ValidationService, packs.FakeRunner]:  # noqa: F811
    runner = packs.FakeRunner()
    g = env.gate
    return ValidationService(
        env.sessions, g.config, g.curation, None, store=env.app[BLOCKSTORE], runner=runner
    ), runner


async def test_a_squatted_listing_never_touches_the_owners_curation(env: GateEnv) -> None:  # noqa: F811
    mallory = await helpers.token(env.app, "mallory", ["evil"])
    pack = _bare_pack(env)
    cid = await _publish(env, pack, mallory, "evil/tiny")  # seen first, listed by someone else
    assert await _publish(env, pack, env.alice, "acme/tiny") == cid

    gate, runner = _counting_gate(env)
    await gate.validate(cid)
    assert len(runner.calls) == 1  # one content, one sandbox run for both listings
    acme, evil = await _listing(env, cid, ACME), await _listing(env, cid, EVIL)
    assert acme.state is PackState.CURATED and await _curated(env, "acme/tiny") == cid
    # evil's namespace trusts no key: its listing is validated but not curated, and acme's is unaffected
    assert evil.state is PackState.VALIDATED and "not curated" in (evil.state_reason or "")
    assert await _curated(env, "evil/tiny") is None

    # evil's namespace trusts the key too: its own listing is curated, on its own pointer
    r = await env.client.put(
        "/v1/namespaces/evil/policy",
        json={"keys": [packs.key_id(env.key)], "reason": "test"},
        headers=helpers.bearer(env.admin),
    )
    assert r.status == 200, await r.text()
    out = await env.gate.curation.try_curate(cid, EVIL)
    assert out.status == "curated" and await _curated(env, "evil/tiny") == cid

    # un-curating one listing leaves the other curated
    status, body = await env.post(f"/v1/packs/{cid}/uncurate", {"reason": "squat"}, env.admin)
    assert status == 409 and body["error"]["code"] == "ambiguous_pack"
    r = await env.client.post(
        f"/v1/packs/{cid}/uncurate",
        params={"model": "evil/tiny"},
        json={"reason": "squat"},
        headers=helpers.bearer(env.admin),
    )
    assert r.status == 200, await r.text()
    assert await _curated(env, "evil/tiny") is None
    evil = await _listing(env, cid, EVIL)
    assert evil.state is PackState.VALIDATED and (evil.flagged or "").startswith("un-curated")
    acme = await _listing(env, cid, ACME)
    assert acme.state is PackState.CURATED and acme.flagged is None
    assert await _curated(env, "acme/tiny") == cid
    status, body = await env.get(f"/v1/packs/{cid}/validation?model=acme/tiny")
    assert status == 200 and body["state"] == "curated"


async def test_a_later_listing_takes_the_contents_verdict(env: GateEnv) -> None:  # noqa: F811
    pack = _bare_pack(env, seed=4)
    cid = await _publish(env, pack, env.alice, "acme/tiny")
    gate, runner = _counting_gate(env)
    await gate.validate(cid)
    assert (await _listing(env, cid, ACME)).state is PackState.CURATED

    mallory = await helpers.token(env.app, "mallory", ["evil"])
    assert await _publish(env, pack, mallory, "evil/tiny") == cid
    assert (await _listing(env, cid, EVIL)).state is PackState.AVAILABLE
    await gate.validate(cid, again=False)  # the automatic job of the new listing
    assert len(runner.calls) == 1  # judged once: the content's verdict stands
    evil = await _listing(env, cid, EVIL)
    assert evil.state is PackState.VALIDATED and evil.state_reason is not None
    assert (await _listing(env, cid, ACME)).state is PackState.CURATED
