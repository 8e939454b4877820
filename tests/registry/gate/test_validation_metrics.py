"""Validation at ``/metrics``: verdicts counted, durations observed, packs by state following the verdicts."""

from __future__ import annotations

from registry.api.keys import BLOCKSTORE
from registry.gate.validation import ValidationService
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv
from tests.registry.metrics.scrape import scrape

VALIDATIONS = "modelpack_validations_total"
SECONDS = "modelpack_validation_duration_seconds"


def _with(env: GateEnv, result: dict[str, str]) -> ValidationService:
    g = env.gate
    runner = packs.FakeRunner(result)
    return ValidationService(
        env.sessions, g.config, g.curation, None, store=env.app[BLOCKSTORE], runner=runner
    )


async def test_validations_are_counted_by_verdict_and_timed(env: GateEnv) -> None:
    good = await env.make_and_publish(seed=1)
    bad = await env.make_and_publish(seed=2)
    odd = await env.make_and_publish(seed=3)
    before = await scrape(env.client)
    assert before.get("modelpack_packs", state="available") == 3
    assert (await env.quick.validate(good)).verdict == "pass"
    failed = await _with(env, {"verdict": "smoke_failed", "reason": "logits differ"}).validate(bad)
    assert failed.verdict == "smoke_failed" and failed.state == "rejected"
    # A runner answering a word outside the known verdicts is counted under "other", never under its word.
    await _with(env, {"verdict": "<b>odd</b>", "reason": "?"}).validate(odd)
    after = await scrape(env.client)

    def delta(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    assert delta(VALIDATIONS, verdict="pass") == 1
    assert delta(VALIDATIONS, verdict="smoke_failed") == 1
    assert delta(VALIDATIONS, verdict="other") == 1
    assert "<b>odd</b>" not in after.text
    assert delta(f"{SECONDS}_count") == 3 and delta(f"{SECONDS}_bucket", le="+Inf") == 3
    assert delta(f"{SECONDS}_sum") > 0
    # The index's states, read at the scrape: one curated (signed, trusted, replicated), two rejected.
    assert after.get("modelpack_packs", state="curated") == 1
    assert after.get("modelpack_packs", state="rejected") == 2
    assert after.get("modelpack_packs", state="available") == 0


async def test_reusing_a_verdict_is_not_another_validation(env: GateEnv) -> None:
    cid = await env.make_and_publish(seed=4)
    assert (await env.quick.validate(cid)).verdict == "pass"
    before = await scrape(env.client)
    view = await env.quick.validate(cid, again=False)  # already judged: no sandbox run
    after = await scrape(env.client)
    assert view.verdict == "pass"
    assert after.get(f"{SECONDS}_count") == before.get(f"{SECONDS}_count")
    assert after.get(VALIDATIONS, verdict="pass") == before.get(VALIDATIONS, verdict="pass")
