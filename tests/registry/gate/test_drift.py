"""A namespace's max_drift: curation refuses a pack whose fingerprint drifts past it from the curated pack
(with the figures); an admin may curate it by hand with a reason, which records the override."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select

from registry.api.keys import BLOCKSTORE
from registry.db.listings import find_listing
from registry.db.models import PackState, PointerChange
from registry.gate.validation import ValidationService
from tests.registry.api import helpers
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv

LIMITS = {"min_top1_agreement": 0.75, "max_mean_kl": 0.5}


def fingerprint(top1: list[int], p: float = 0.9) -> dict[str, Any]:
    """A probe-v1-shaped fingerprint over a 10-token vocabulary: each row's top-1 token at ``p``."""
    return {
        "scheme": "probe-v1",
        "k": 2,
        "vocab_size": 10,
        "probe_len": 4,
        "positions": [3],
        "top_ids": [[t, (t + 1) % 10] for t in top1],
        "top_logprobs": [[math.log(p), math.log(0.05)] for _ in top1],
    }


SAME = fingerprint([1, 2, 3, 4])
OTHER = fingerprint([5, 6, 7, 4])  # 1 of 4 rows agree


async def set_drift(env: GateEnv, max_drift: Any) -> Any:
    body = {"keys": [packs.key_id(env.key)], "max_drift": max_drift, "reason": "drift test"}
    r = await env.client.put("/v1/namespaces/acme/policy", json=body, headers=helpers.bearer(env.admin))
    return r.status, await r.json()


async def validated(env: GateEnv, seed: int, fp: dict[str, Any] | None) -> str:
    """Publish a pack and pass it through a sandbox stand-in whose report carries ``fp``."""
    cid = await env.make_and_publish(seed=seed)
    report: dict[str, Any] = {"verdict": "pass", "reason": "ok"}
    report.update({"fingerprint": fp} if fp else {"fingerprint": None, "fingerprint_error": "no logits"})
    g = env.gate
    runner = packs.FakeRunner(report)
    await ValidationService(
        env.sessions, g.config, g.curation, None, store=env.app[BLOCKSTORE], runner=runner
    ).validate(cid)
    return cid


async def pointer(env: GateEnv) -> str | None:
    status, body = await env.get("/v1/models/acme/tiny/pointers/curated")
    return body["cid"] if status == 200 else None


async def state(env: GateEnv, cid: str) -> tuple[PackState, str | None]:
    async with env.sessions() as s:
        pack = await find_listing(s, cid)
        return pack.state, pack.state_reason


async def test_policy_stores_and_bounds_max_drift(env: GateEnv) -> None:
    status, body = await set_drift(env, LIMITS)
    assert status == 200, body
    assert body["max_drift"] == LIMITS
    status, body = await env.get("/v1/namespaces/acme/policy")
    assert body["max_drift"] == LIMITS
    status, body = await set_drift(env, {"min_top1_agreement": 1.5})
    assert status == 422 and body["error"]["code"] == "invalid_policy", body
    assert "max_drift.min_top1_agreement" in body["error"]["message"] and "1.5" in body["error"]["message"]
    status, body = await set_drift(env, {"max_mean_kl": -1})
    assert status == 422 and "max_drift.max_mean_kl" in body["error"]["message"], body
    status, body = await set_drift(env, {"max_kl": 1})  # unknown field: the API's body check
    assert status == 400 and "max_drift" in body["error"]["message"], body
    status, body = await env.get("/v1/namespaces/acme/policy")
    assert body["max_drift"] == LIMITS  # nothing half-written


async def test_within_limits_curates(env: GateEnv) -> None:
    assert (await set_drift(env, LIMITS))[0] == 200
    first = await validated(env, 0, SAME)
    assert await pointer(env) == first
    second = await validated(env, 1, fingerprint([1, 2, 3, 4], p=0.8))  # same tokens, a little less sure
    assert await pointer(env) == second, (await state(env, second))[1]
    assert (await state(env, second))[0] is PackState.CURATED


async def test_past_limits_refused_with_figures_then_manual_override(env: GateEnv) -> None:
    assert (await set_drift(env, LIMITS))[0] == 200
    first = await validated(env, 0, SAME)
    second = await validated(env, 1, OTHER)
    assert await pointer(env) == first
    st, reason = await state(env, second)
    assert st is PackState.VALIDATED
    assert reason is not None and "drifts past max_drift" in reason
    assert "top-1 agreement 0.25" in reason and "mean KL" in reason and first in reason
    assert "top-1 agreement >= 0.75" in reason and "mean KL <= 0.5" in reason
    status, body = await env.get(f"/v1/packs/{second}/validation")
    assert body["state"] == "validated" and "drifts past" in body["state_reason"]

    status, body = await env.post(f"/v1/packs/{second}/curate", {"reason": " "}, env.admin)
    assert status == 400, body  # overriding needs a reason
    assert await pointer(env) == first
    status, body = await env.post(f"/v1/packs/{second}/curate", {"reason": "known retrain"}, env.admin)
    assert status == 200, body
    assert await pointer(env) == second
    async with env.sessions() as s:
        last = (
            await s.execute(select(PointerChange).order_by(PointerChange.id.desc()).limit(1))
        ).scalar_one()
    assert last.to_cid == second and last.reason is not None
    assert "known retrain" in last.reason and "overriding" in last.reason and "0.25" in last.reason


async def test_without_policy_drift_does_not_block(env: GateEnv) -> None:
    first = await validated(env, 0, SAME)
    second = await validated(env, 1, OTHER)
    assert first != second and await pointer(env) == second


async def test_missing_fingerprint_refused_under_policy(env: GateEnv) -> None:
    assert (await set_drift(env, LIMITS))[0] == 200
    first = await validated(env, 0, SAME)
    second = await validated(env, 1, None)
    assert await pointer(env) == first
    st, reason = await state(env, second)
    assert st is PackState.VALIDATED
    assert reason is not None and "cannot be checked against max_drift" in reason and "no logits" in reason


async def test_mismatched_probes_refused_under_policy(env: GateEnv) -> None:
    assert (await set_drift(env, LIMITS))[0] == 200
    first = await validated(env, 0, SAME)
    other_vocab = {**SAME, "vocab_size": 12}
    second = await validated(env, 1, other_vocab)
    assert await pointer(env) == first
    _, reason = await state(env, second)
    assert reason is not None and "vocab_size" in reason and "cannot compare" in reason
