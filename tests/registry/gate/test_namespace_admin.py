"""Curation by hand is namespace-scoped (issue #12 item 1): beta's admin cannot un-curate acme's pack."""

from __future__ import annotations

from tests.registry.api import helpers
from tests.registry.gate.conftest import GateEnv


async def test_only_an_admin_of_the_packs_namespace_curates_or_uncurates(env: GateEnv) -> None:
    cid = await env.make_and_publish(seed=1)
    assert (await env.quick.validate(cid)).state == "curated"
    beta_admin = await helpers.token(env.app, "bob", ["beta"], scopes=("admin",))
    status, body = await env.post(f"/v1/packs/{cid}/uncurate", {"reason": "sabotage"}, beta_admin)
    assert status == 403 and "acme" in body["error"]["message"], body
    status, body = await env.post(f"/v1/packs/{cid}/curate", {"reason": "sabotage"}, beta_admin)
    assert status == 403, body
    status, body = await env.get("/v1/models/acme/tiny/pointers/curated")
    assert status == 200 and body["cid"] == cid  # untouched
    acme_admin = await helpers.token(env.app, "alice", ["acme"], scopes=("admin",))
    status, body = await env.post(f"/v1/packs/{cid}/uncurate", {"reason": "bad outputs"}, acme_admin)
    assert status == 200 and body["status"] == "withheld", body
    status, body = await env.post(f"/v1/packs/{cid}/curate", {"reason": "fixed"}, acme_admin)
    assert status == 200 and body["pointer"] == cid, body
