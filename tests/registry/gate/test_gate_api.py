"""The gate's HTTP routes: request a validation, read it, curate and un-curate by hand."""

from __future__ import annotations

from sqlalchemy import select

from registry.db.jobs import Job
from tests.registry.gate.conftest import GateEnv


async def test_request_validation_needs_a_token_and_an_existing_pack(env: GateEnv) -> None:
    cid = await env.make_and_publish()
    status, body = await env.post(f"/v1/packs/{cid}/validate")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await env.post(
        "/v1/packs/bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba/validate", tok=env.alice
    )
    assert status == 404
    status, body = await env.post("/v1/packs/not-a-cid/validate", tok=env.alice)
    assert status == 400
    status, body = await env.post(f"/v1/packs/{cid}/validate", tok=env.alice)
    assert status == 202 and body["cid"] == cid and body["status"] == "queued"
    again_status, again = await env.post(f"/v1/packs/{cid}/validate", tok=env.admin)
    assert again_status == 202 and again["job_id"] == body["job_id"]  # deduplicated while queued
    async with env.sessions() as s:
        job = await s.get(Job, body["job_id"])
        assert job is not None and job.kind == "validate" and job.payload["requested_by"] == "alice"


async def test_validation_view_before_and_after(env: GateEnv) -> None:
    cid = await env.make_and_publish()
    status, body = await env.get(f"/v1/packs/{cid}/validation")
    assert status == 200 and body["state"] == "available" and body["validation"] is None
    await env.gate.validate(cid)
    status, body = await env.get(f"/v1/packs/{cid}/validation")
    assert body["state"] == "curated" and body["validation"]["verdict"] == "pass"
    assert body["validation"]["report"]["smoke"]["checks"]
    detail = await (await env.client.get(f"/v1/packs/{cid}")).json()
    assert detail["validation"]["verdict"] == "pass"  # the pack detail shows the same verdict


async def test_manual_curation_routes(env: GateEnv) -> None:
    first = await env.make_and_publish(seed=1)
    await env.quick.validate(first)
    second = await env.make_and_publish(seed=2)
    await env.quick.validate(second)
    status, _ = await env.post(f"/v1/packs/{first}/curate", {"reason": "x"})
    assert status == 401
    status, body = await env.post(f"/v1/packs/{first}/curate", {"reason": "x"}, env.alice)
    assert status == 403
    status, body = await env.post(f"/v1/packs/{first}/curate", {}, env.admin)
    assert status == 400 and body["error"]["code"] == "reason_required"
    status, body = await env.post(f"/v1/packs/{first}/curate", {"reason": "x", "force": True}, env.admin)
    assert status == 400
    status, body = await env.post(f"/v1/packs/{first}/curate", {"reason": "second regressed"}, env.admin)
    assert status == 200 and body["pointer"] == first and body["pointer_moved"]
    status, body = await env.post(f"/v1/packs/{first}/uncurate", {"reason": "first too"}, env.admin)
    assert status == 200 and body["pointer"] == second
    status, body = await env.post(f"/v1/packs/{first}/uncurate", {"reason": "again"}, env.admin)
    assert status == 409 and body["error"]["code"] == "curation_refused"
    unsigned = await env.make_and_publish(seed=3, signed=False)
    await env.quick.validate(unsigned)
    status, body = await env.post(f"/v1/packs/{unsigned}/curate", {"reason": "please"}, env.admin)
    assert status == 409 and "no signatures" in body["error"]["message"]
    async with env.sessions() as s:
        kinds = (await s.execute(select(Job.kind))).scalars().all()
        assert "validate" in kinds  # publish enqueued the automatic validation


async def test_one_publisher_cannot_hold_the_validation_slot(env: GateEnv) -> None:
    import dataclasses

    import pytest

    from registry.accounts.principal import Principal
    from registry.gate.errors import ValidationQueueFull
    from registry.gate.validation import ValidationService

    g = env.gate
    capped = ValidationService(
        env.sessions,
        dataclasses.replace(g.config, max_queued_per_publisher=2),
        g.curation,
        g._queue,
    )
    alice = Principal(
        publisher_id=2, publisher="alice", token_id=2, scopes=frozenset({"publish"}), namespaces=("acme",)
    )
    root = Principal(
        publisher_id=1, publisher="root", token_id=1, scopes=frozenset({"admin"}), namespaces=None
    )
    cids = [await env.make_and_publish(seed=i) for i in range(3)]
    await capped.request(alice, cids[0])
    await capped.request(alice, cids[1])
    with pytest.raises(ValidationQueueFull) as e:
        await capped.request(alice, cids[2])
    assert e.value.http_status == 429 and "max_queued_per_publisher = 2" in e.value.message
    await capped.request(root, cids[2])  # another publisher still gets its turn
