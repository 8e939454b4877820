"""Withdrawal reaches IPNS: un-curating (or a degrade with nothing to roll back to) signs a withdrawal
record (sequence + 1), and ``/ipns/{name}`` serves it instead of the last pack's record."""

from __future__ import annotations

import dataclasses

from registry.api.keys import BLOCKSTORE, IPNS_CHANNELS, REGISTRY
from registry.db.base import utcnow
from registry.gate.curation import CurationService
from registry.gate.validation import ValidationService
from registry.ipns.record import WITHDRAWN_PATH, validate_record
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv
from tests.registry.gate.test_curation import Switch

RECORD = {"Accept": "application/vnd.ipfs.ipns-record"}


async def _record(env: GateEnv, name: str) -> bytes:
    r = await env.client.get(f"/ipns/{name}", headers=RECORD)
    assert r.status == 200, await r.text()
    return await r.read()


async def _channel(env: GateEnv) -> dict:
    status, body = await env.get("/v1/models/acme/tiny/channels/curated")
    assert status == 200, body
    return body


async def test_uncurate_serves_a_withdrawal_record_not_the_old_one(env: GateEnv) -> None:
    only = await env.make_and_publish(seed=1)
    await env.quick.validate(only)
    ch = await _channel(env)
    assert ch["value"] == f"/ipfs/{only}" and ch["withdrawn"] is False
    old = await _record(env, ch["name"])
    old_rec = validate_record(ch["name"], old, utcnow())
    status, body = await env.post(f"/v1/packs/{only}/uncurate", {"reason": "bad outputs"}, env.admin)
    assert status == 200 and body["pointer"] is None, body
    new = await _record(env, ch["name"])
    assert new != old
    rec = validate_record(ch["name"], new, utcnow())
    assert rec.withdrawn and rec.path == WITHDRAWN_PATH and rec.sequence == old_rec.sequence + 1
    ch = await _channel(env)
    assert ch["withdrawn"] is True and ch["sequence"] == rec.sequence


async def test_degrade_with_nothing_to_roll_back_to_signs_a_withdrawal(env: GateEnv) -> None:
    trust, repl = Switch("trust"), Switch("replication")
    curation = CurationService(
        env.sessions,
        dataclasses.replace(env.gate.config, on_degrade="rollback"),
        trust,
        repl,
        on_moved=env.app[IPNS_CHANNELS].on_pointer_moved,
        on_changed=env.app[REGISTRY].pointers.forget_model,
        on_withdrawn=env.app[IPNS_CHANNELS].on_pointer_withdrawn,
    )
    validation = ValidationService(
        env.sessions, curation.config, curation, None, store=env.app[BLOCKSTORE], runner=packs.FakeRunner()
    )
    only = await env.make_and_publish(seed=1)
    await validation.validate(only)
    before = await _channel(env)
    assert before["value"] == f"/ipfs/{only}"
    trust.failing[only] = "signature by k (inline): revoked: key revoked"
    await curation.sweep()
    after = await _channel(env)
    assert after["withdrawn"] and after["sequence"] == before["sequence"] + 1
    await curation.sweep()  # nothing moved: no further record
    assert (await _channel(env))["sequence"] == after["sequence"]
