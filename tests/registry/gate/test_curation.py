"""The curation rule and the curated pointer: CAS moves, newest wins, degrade (rollback | hold), by hand."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.accounts.principal import Principal
from registry.api.keys import BLOCKSTORE, IPNS_CHANNELS, REGISTRY
from registry.db.listings import find_listing
from registry.db.models import AuditEvent, Pack, PackState, PointerChange
from registry.errors import Forbidden, NotFound
from registry.events import store
from registry.gate.curation import CurationService
from registry.gate.errors import CurationRefused, ReasonRequired
from registry.gate.rule import Fact
from registry.gate.validation import ValidationService
from registry.jobs.protocol import RetryJob
from registry.names import ModelRef
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv

ADMIN = Principal(publisher_id=1, publisher="root", token_id=1, scopes=frozenset({"admin"}), namespaces=None)
ALICE = Principal(
    publisher_id=2, publisher="alice", token_id=2, scopes=frozenset({"publish"}), namespaces=("acme",)
)


class Switch:
    """A fake check per pack: ok unless a test says otherwise."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing: dict[str, str] = {}

    async def __call__(self, session: AsyncSession, pack_cid: str, model_id: int) -> Fact:
        if pack_cid in self.failing:
            return Fact(False, (self.failing[pack_cid],))
        return Fact(True, (), f"{self.what} ok")


@dataclasses.dataclass
class Rig:
    env: GateEnv
    trust: Switch
    replication: Switch
    curation: CurationService
    validation: ValidationService

    async def validated(self, seed: int) -> str:
        cid = await self.env.make_and_publish(seed=seed)
        await self.validation.validate(cid)
        return cid

    async def pointer(self) -> str | None:
        status, body = await self.env.get("/v1/models/acme/tiny/pointers/curated")
        return body["cid"] if status == 200 else None

    async def pack(self, cid: str) -> Pack:
        async with self.env.sessions() as s:
            return await find_listing(s, cid)

    async def history(self) -> list[tuple[str | None, str | None, str | None]]:
        async with self.env.sessions() as s:
            rows = await s.execute(
                select(PointerChange.from_cid, PointerChange.to_cid, PointerChange.reason)
                .where(PointerChange.tag == "curated")
                .order_by(PointerChange.id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]

    async def events(self, after: int = 0) -> list[tuple[str, str | None, dict[str, Any]]]:
        """(type, pack, payload) of the outbox's events after ``after``, in id order."""
        async with self.env.sessions() as s:
            rows = await store.page(s, after=after, limit=1000)
        return [(e.type, e.pack, e.payload) for e in rows]

    async def last_event_id(self) -> int:
        async with self.env.sessions() as s:
            return await store.last_id(s)

    async def actions(self) -> list[str]:
        async with self.env.sessions() as s:
            return list((await s.execute(select(AuditEvent.action).order_by(AuditEvent.id))).scalars())


def make_rig(env: GateEnv, mode: Literal["rollback", "hold"] = "rollback") -> Rig:
    trust, repl = Switch("trust"), Switch("replication")
    config = dataclasses.replace(env.gate.config, on_degrade=mode)
    curation = CurationService(
        env.sessions,
        config,
        trust,
        repl,
        on_moved=env.app[IPNS_CHANNELS].on_pointer_moved,
        on_changed=env.app[REGISTRY].pointers.forget_model,
    )
    validation = ValidationService(
        env.sessions, config, curation, None, store=env.app[BLOCKSTORE], runner=packs.FakeRunner()
    )
    return Rig(env, trust, repl, curation, validation)


async def test_the_newest_fit_pack_holds_the_pointer(env: GateEnv) -> None:
    rig = make_rig(env)
    old = await env.make_and_publish(seed=1)
    rig.replication.failing[old] = "waiting for replicas"
    await rig.validation.validate(old)
    assert (await rig.pack(old)).state is PackState.VALIDATED
    new = await rig.validated(2)
    assert await rig.pointer() == new
    del rig.replication.failing[old]
    out = await rig.curation.try_curate(old)  # now fit, but older: curated without taking the pointer
    assert out.status == "curated" and not out.pointer_moved
    assert (await rig.pack(old)).state is PackState.CURATED
    assert await rig.pointer() == new


async def test_waiting_for_replicas_is_said_in_the_state_reason(env: GateEnv) -> None:
    rig = make_rig(env)
    cid = await env.make_and_publish(seed=1)
    rig.replication.failing[cid] = "1 of 5 unit(s) below replication_min 2"
    await rig.validation.validate(cid)
    pack = await rig.pack(cid)
    assert pack.state is PackState.VALIDATED and "waiting for replicas" in (pack.state_reason or "")
    assert await rig.pointer() is None


async def test_degrade_rolls_back_to_the_previous_curated_pack(env: GateEnv) -> None:
    rig = make_rig(env)
    first = await rig.validated(1)
    second = await rig.validated(2)
    assert await rig.pointer() == second
    rig.replication.failing[second] = "2 of 5 unit(s) below replication_min 3"
    mark = await rig.last_event_id()
    out = await rig.curation.check_curated(second)
    assert out.pointer == first and await rig.pointer() == first
    (degraded, pack_cid, body), (moved, to, move) = await rig.events(mark)
    assert (degraded, pack_cid, body["from"], body["state"]) == (
        "pack.degraded",
        second,
        "curated",
        "validated",
    )
    assert "below replication_min" in body["reason"] and "below replication_min" in body["flagged"]
    assert (moved, to, move["tag"], move["from"], move["to"]) == (
        "pointer.moved",
        first,
        "curated",
        second,
        first,
    )
    pack = await rig.pack(second)
    assert pack.state is PackState.VALIDATED and "below replication_min" in (pack.flagged or "")
    last = (await rig.history())[-1]
    assert last[:2] == (second, first) and "rollback" in (last[2] or "")
    assert "pack.degraded" in await rig.actions()
    record = await env.app[IPNS_CHANNELS].for_channel(ModelRef("acme", "tiny"), "curated")
    assert record.value == f"/ipfs/{first}"  # the IPNS record follows the rollback
    # Fit again: the sweep curates it again and, being newest, it takes the pointer back.
    del rig.replication.failing[second]
    mark = await rig.last_event_id()
    await rig.curation.sweep()
    assert await rig.pointer() == second
    assert (await rig.pack(second)).flagged is None
    recovered = [(t, c) for t, c, _ in await rig.events(mark)]
    assert recovered == [("pack.curated", second), ("pointer.moved", second)]


async def test_degrade_with_nothing_to_roll_back_to_removes_the_pointer(env: GateEnv) -> None:
    rig = make_rig(env)
    only = await rig.validated(1)
    rig.trust.failing[only] = "signature by k (inline): revoked: key revoked"
    await rig.curation.sweep()
    assert await rig.pointer() is None
    last = (await rig.history())[-1]
    assert last[:2] == (only, None) and "no earlier curated pack" in (last[2] or "")
    removed = [p for t, _, p in await rig.events() if t == "pointer.moved" and p["tag"] == "curated"][-1]
    assert (removed["from"], removed["to"]) == (only, None)


async def test_hold_keeps_the_pointer_flags_the_pack_and_says_why(env: GateEnv) -> None:
    rig = make_rig(env, "hold")
    first = await rig.validated(1)
    second = await rig.validated(2)
    rig.trust.failing[second] = "key revoked"
    mark = await rig.last_event_id()
    await rig.curation.check_curated(second)
    await rig.curation.check_curated(second)  # a second sweep does not repeat the alert
    held = await rig.events(mark)
    assert [(t, c, p["state"], p["reason"]) for t, c, p in held] == [
        ("pack.degraded", second, "curated", "key revoked")
    ]
    assert await rig.pointer() == second
    pack = await rig.pack(second)
    assert pack.state is PackState.CURATED and (pack.flagged or "").endswith("key revoked")
    holds = [h for h in await rig.history() if (h[2] or "").startswith("hold")]
    assert holds == [(second, second, "hold: key revoked; an admin must act")]
    assert (await rig.actions()).count("pack.degraded") == 1
    del rig.trust.failing[second]
    await rig.curation.check_curated(second)
    assert (await rig.pack(second)).flagged is None and await rig.pointer() == second
    assert first != second


async def test_revalidation_failure_of_the_curated_pack_rolls_back_and_rejects(env: GateEnv) -> None:
    rig = make_rig(env)
    first = await rig.validated(1)
    second = await rig.validated(2)
    failing = ValidationService(
        env.sessions,
        rig.curation.config,
        rig.curation,
        None,
        store=env.app[BLOCKSTORE],
        runner=packs.FakeRunner({"verdict": "smoke_failed", "reason": "logits are NaN"}),
    )
    await failing.validate(second)
    assert (await rig.pack(second)).state is PackState.REJECTED
    assert await rig.pointer() == first


async def test_manual_curation_needs_an_admin_a_reason_and_a_fit_pack(env: GateEnv) -> None:
    rig = make_rig(env)
    first = await rig.validated(1)
    second = await rig.validated(2)
    with pytest.raises(Forbidden):
        await rig.curation.curate(ALICE, first, "roll back")
    with pytest.raises(ReasonRequired):
        await rig.curation.curate(ADMIN, first, "  ")
    with pytest.raises(NotFound):
        await rig.curation.curate(ADMIN, "bafkreiaaaa", "x")
    out = await rig.curation.curate(ADMIN, first, "second has a tokenizer bug")
    assert out.pointer_moved and await rig.pointer() == first  # by hand, an older pack may take it
    rig.trust.failing[second] = "untrusted"
    with pytest.raises(CurationRefused, match="untrusted"):
        await rig.curation.curate(ADMIN, second, "try")
    actions = await rig.actions()
    assert "pack.curate.manual" in actions


async def test_uncurate_rolls_back_and_the_sweep_does_not_undo_it(env: GateEnv) -> None:
    rig = make_rig(env)
    first = await rig.validated(1)
    second = await rig.validated(2)
    with pytest.raises(ReasonRequired):
        await rig.curation.uncurate(ADMIN, second, None)
    out = await rig.curation.uncurate(ADMIN, second, "bad outputs reported")
    assert out.pointer == first and await rig.pointer() == first
    await rig.curation.sweep()
    assert await rig.pointer() == first
    pack = await rig.pack(second)
    assert pack.state is PackState.VALIDATED and "bad outputs reported" in (pack.flagged or "")
    await rig.curation.curate(ADMIN, second, "fixed in the tokenizer, not the weights")
    assert await rig.pointer() == second
    third = await env.make_and_publish(seed=3)
    rig.trust.failing[third] = "unsigned"
    await rig.validation.validate(third)
    with pytest.raises(CurationRefused, match="nothing to un-curate"):
        await rig.curation.uncurate(ADMIN, third, "never curated")
    assert "pack.uncurate.manual" in await rig.actions()


async def test_a_key_revoked_back_to_before_the_publish_withdraws_the_curated_pack(env: GateEnv) -> None:
    cid = await env.make_and_publish()
    assert (await env.quick.validate(cid)).state == "curated"
    status, body = await env.post(
        f"/v1/keys/{packs.key_id(env.key)}/revoke",
        {"reason": "private key leaked", "at": "2000-01-01T00:00:00+00:00"},
        env.admin,
    )
    assert status == 200, body
    counts = await env.gate.curation.sweep()
    assert counts.get("withheld") == 1
    status, _ = await env.get("/v1/models/acme/tiny/pointers/curated")
    assert status == 404
    status, v = await env.get(f"/v1/packs/{cid}/validation")
    assert v["state"] == "validated" and "revoked" in (v["flagged"] or "")
    status, hist = await env.get("/v1/models/acme/tiny/pointers/curated/history")
    assert hist["items"][0]["to_cid"] is None and "revoked" in hist["items"][0]["reason"]


@pytest.mark.parametrize("verdict", ["timed_out", "out_of_memory", "crashed"])
async def test_environment_failures_retry_and_reject_only_after_n_in_a_row(
    env: GateEnv, verdict: str
) -> None:
    rig = make_rig(env)
    first = await rig.validated(1)
    second = await rig.validated(2)
    config = dataclasses.replace(rig.curation.config, max_environment_failures=3, environment_retry_s=7.0)
    flaky = ValidationService(
        env.sessions,
        config,
        rig.curation,
        None,
        store=env.app[BLOCKSTORE],
        runner=packs.FakeRunner({"verdict": verdict, "reason": "the host was busy"}),
    )
    delays = []
    for attempt in (1, 2):
        with pytest.raises(RetryJob) as e:
            await flaky.validate(second)
        delays.append(e.value.delay_s)
        assert (await rig.pack(second)).state is PackState.CURATED, f"attempt {attempt} rejected the pack"
    assert delays == [7.0, 14.0]  # backoff doubles
    view = await flaky.validate(second)  # the third in a row: now it is the pack's fault
    assert view.state == "rejected" and view.state_reason is not None
    assert "environment failure 3 of 3 in a row" in view.state_reason
    assert await rig.pointer() == first


async def test_a_pass_in_between_resets_the_environment_failure_count(env: GateEnv) -> None:
    rig = make_rig(env)
    cid = await rig.validated(1)
    config = dataclasses.replace(rig.curation.config, max_environment_failures=2)

    def svc(verdict: str) -> ValidationService:
        runner = packs.FakeRunner({"verdict": verdict, "reason": "r"})
        return ValidationService(
            env.sessions, config, rig.curation, None, store=env.app[BLOCKSTORE], runner=runner
        )

    with pytest.raises(RetryJob):
        await svc("crashed").validate(cid)
    await svc("pass").validate(cid)
    with pytest.raises(RetryJob):
        await svc("crashed").validate(cid)
    assert (await rig.pack(cid)).state is PackState.CURATED
    assert (await svc("smoke_failed").validate(cid)).state == "rejected"  # a pack failure rejects at once


async def test_rechecking_a_fit_curated_pack_opens_no_write_transaction(env: GateEnv) -> None:
    """The sweep re-checks every curated pack: one still fit is read, not written (SQLite's one writer is not
    held for it); one no longer fit is decided again in a write transaction."""
    rig = make_rig(env)
    cid = await rig.validated(1)
    assert await rig.pointer() == cid
    writes: list[int] = []

    def on_begin(conn: Any) -> None:
        if not conn.get_execution_options().get("readonly"):
            writes.append(1)

    engine = env.sessions.kw["bind"].sync_engine
    event.listen(engine, "begin", on_begin)
    try:
        assert (await rig.curation.check_curated(cid)).status == "curated"
        assert writes == []
        rig.trust.failing[cid] = "the signing key was revoked"
        out = await rig.curation.check_curated(cid)
    finally:
        event.remove(engine, "begin", on_begin)
    assert out.status == "withheld" and writes
    assert (await rig.pack(cid)).state is PackState.VALIDATED and await rig.pointer() is None
