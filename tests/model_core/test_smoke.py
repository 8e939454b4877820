"""The smoke suite passes a healthy model and fails, naming the problem, on broken ones."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from model_core import smoke
from model_core.config import ModelConfig
from model_core.layers import KVCache
from model_core.loader import load_pack
from model_core.model import Transformer
from model_core.smoke import SmokeConfig, SmokeSuite, run_smoke


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_healthy_pack_passes_every_check_with_a_full_report(tiny_pack: Path) -> None:
    report = run_smoke(load_pack(tiny_pack).model)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert len(report["checks"]) == 10
    assert report["versions"]["torch"] == torch.__version__ and report["versions"]["safetensors"]
    assert report["attention_backend"] == "sdpa(enable_gqa)"
    assert report["logits_digest"].startswith("sha256:")
    assert all(c["reason"] and c["seconds"] >= 0 for c in report["checks"])


def test_logits_digest_is_reproducible(tiny_pack: Path) -> None:
    model = load_pack(tiny_pack).model
    assert run_smoke(model)["logits_digest"] == run_smoke(model)["logits_digest"]


def test_nan_weight_fails_naming_the_tensor(tiny_model: Transformer) -> None:
    with torch.no_grad():
        tiny_model.layers[1].mlp.w2.weight[3, 4] = float("nan")
    checks = by_name(run_smoke(tiny_model))
    weights = checks["weights_finite_and_not_degenerate"]
    assert (
        not weights["passed"]
        and "layers.1.mlp.w2.weight" in weights["reason"]
        and "1 non-finite" in weights["reason"]
    )
    assert not checks["logits_shape_finite_not_degenerate"]["passed"]


def test_all_zero_matrix_fails(tiny_model: Transformer) -> None:
    with torch.no_grad():
        tiny_model.layers[0].attn.v_proj.weight.zero_()
    reason = by_name(run_smoke(tiny_model))["weights_finite_and_not_degenerate"]["reason"]
    assert "layers.0.attn.v_proj.weight" in reason and "all zeros" in reason


HALF_TOO = pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])


@HALF_TOO
def test_a_stale_cache_slot_fails_cached_decoding(tiny_model: Transformer, dtype: torch.dtype) -> None:
    """In half precision too: its relative L2 tolerance leaves room for rounding, not for a wrong cache."""
    tiny_model = tiny_model.to(dtype)
    real_new_cache = tiny_model.new_cache

    def with_stale_slot(batch_size: int, capacity: int | None = None):  # type: ignore[no-untyped-def]
        cache = real_new_cache(batch_size, (capacity or 31) + 1)
        cache.length = 1  # an empty slot that unmasked decoding would attend to
        return cache

    tiny_model.new_cache = with_stale_slot  # type: ignore[method-assign]
    checks = by_name(run_smoke(tiny_model))
    assert not checks["cached_decoding_matches_full"]["passed"]
    assert "exceeds" in checks["cached_decoding_matches_full"]["reason"]
    assert checks["deterministic"]["passed"]


def test_spent_time_budget_skips_the_rest(tiny_model: Transformer) -> None:
    report = run_smoke(tiny_model, SmokeConfig(time_budget_s=1e-9))
    assert not report["passed"] and report["budget_exhausted"]
    assert any(c.get("skipped") and "time budget" in c["reason"] for c in report["checks"])


def test_big_models_use_short_sequences(tiny_model: Transformer) -> None:
    report = run_smoke(tiny_model, SmokeConfig(big_model_params=10, short_seq_len=5))
    assert report["passed"] and report["seq_len"] == 5


def test_bf16_model_passes_with_half_precision_tolerance(tiny_model: Transformer) -> None:
    report = run_smoke(tiny_model.to(torch.bfloat16))
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert report["dtype"] == "bfloat16"


@pytest.mark.parametrize("max_seq_len", [4, 6, 9])
def test_short_context_models_pass(max_seq_len: int) -> None:
    cfg = ModelConfig(
        vocab_size=32,
        d_model=16,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        dim_ff=8,
        max_seq_len=max_seq_len,
    )
    torch.manual_seed(0)
    report = run_smoke(Transformer(cfg, init_std=0.3))
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]


@HALF_TOO
def test_an_ignored_attention_mask_fails_left_padding(tiny_model: Transformer, dtype: torch.dtype) -> None:
    tiny_model = tiny_model.to(dtype)
    tiny_model._new_keep_mask = lambda *_: None  # type: ignore[method-assign]  # pads read as real tokens
    checks = by_name(run_smoke(tiny_model))
    assert not checks["left_padding_matches_per_row"]["passed"]
    assert "row 1" in checks["left_padding_matches_per_row"]["reason"]
    assert checks["cached_decoding_matches_full"]["passed"]


def test_pads_forgotten_while_decoding_fail_left_padding(tiny_model: Transformer) -> None:
    """The prefill masks the pads, but later single-token steps attend to the padded cache slots."""

    class ForgetfulCache(KVCache):
        has_padding = property(lambda self: False, lambda self, value: None)

    def new_cache(batch_size: int, capacity: int | None = None) -> KVCache:
        cfg = tiny_model.cfg
        return ForgetfulCache(
            cfg.num_layers, batch_size, cfg.num_kv_heads, cfg.head_dim, capacity or cfg.max_seq_len,
            device="cpu", dtype=tiny_model.embed.weight.dtype,
        )  # fmt: skip

    tiny_model.new_cache = new_cache  # type: ignore[method-assign]
    checks = by_name(run_smoke(tiny_model))
    assert not checks["left_padding_matches_per_row"]["passed"]
    assert "row 1" in checks["left_padding_matches_per_row"]["reason"]
    assert checks["cached_decoding_matches_full"]["passed"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_batched_generation_may_part_only_on_a_near_tie_in_half_precision(
    tiny_model: Transformer, dtype: torch.dtype
) -> None:
    suite = SmokeSuite(tiny_model.to(dtype))
    with torch.inference_mode():  # the position whose top two logits are closest
        logits = tiny_model(suite.ids[:1]).float()[0]
        top2 = logits.topk(2).values
        last = logits[int((top2[:, 0] - top2[:, 1]).argmin())]
        order = last.argsort(descending=True)
        best, runner_up, worst = int(order[0]), int(order[1]), int(order[-1])
    margin = float(last[best] - last[runner_up])
    assert margin <= SmokeConfig().tie_tolerance * max(1.0, float(last.abs().max()))
    assert suite._near_tie(last, best, runner_up) == pytest.approx(margin, abs=1e-6)
    assert suite._near_tie(last, best, worst) is None  # far from a tie: a real difference


def test_batched_generation_must_agree_exactly_in_fp32(tiny_model: Transformer) -> None:
    suite = SmokeSuite(tiny_model)
    with torch.inference_mode():
        last = tiny_model(suite.ids[:1, :5])[0, -1]
    order = last.argsort(descending=True)
    assert suite._near_tie(last, int(order[0]), int(order[1])) is None


def test_a_batch_that_picks_other_tokens_than_its_rows_fails_generation(tiny_model: Transformer) -> None:
    """Decode steps over a left-padded cache with the second row's logits scrambled: the batch then picks
    tokens the row alone would not, and the check names the row (left padding, comparing logits, fails
    too; cached decoding, unpadded, does not)."""

    def scramble(_module: object, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
        cache = kwargs.get("cache")
        if cache is not None and cache.has_padding and args[0].size(1) == 1:
            output = output.clone()
            output[1] = output[1].flip(-1)
        return output

    tiny_model.register_forward_hook(scramble, with_kwargs=True)
    checks = by_name(run_smoke(tiny_model))
    generation = checks["batched_generation_matches_per_row"]
    assert not generation["passed"] and "row 1: batched generation" in generation["reason"]
    assert "row 0" not in generation["reason"]
    assert not checks["left_padding_matches_per_row"]["passed"]
    assert checks["cached_decoding_matches_full"]["passed"]


def test_generation_that_ignores_eos_fails(tiny_model: Transformer, monkeypatch: pytest.MonkeyPatch) -> None:
    real = smoke.greedy_steps

    def without_eos(*args: object, eos_token_id: int | None = None, **kwargs: object) -> object:
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(smoke, "greedy_steps", without_eos)
    checks = by_name(run_smoke(tiny_model))
    generation = checks["batched_generation_matches_per_row"]
    assert not generation["passed"] and "not EOS padding" in generation["reason"], generation
    assert checks["left_padding_matches_per_row"]["passed"]


def test_generation_that_ends_with_rows_still_going_fails(
    tiny_model: Transformer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = smoke.greedy_steps

    def first_step_only(*args: object, **kwargs: object) -> object:
        return itertools.islice(real(*args, **kwargs), 1)  # type: ignore[arg-type]

    monkeypatch.setattr(smoke, "greedy_steps", first_step_only)
    generation = by_name(run_smoke(tiny_model))["batched_generation_matches_per_row"]
    assert not generation["passed"] and "generation ended after 1 of" in generation["reason"], generation


def test_a_model_whose_rows_all_pick_the_eos_candidate_is_checked_on_a_free_run(
    tiny_model: Transformer,
) -> None:
    """Every row's first token is row 0's (the EOS the run would use): stopping them all at once would
    leave no decode step to check, so the rows are generated again without EOS, and still compared."""

    def favour(_module: object, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[..., 5] += 1e4
        return output

    tiny_model.register_forward_hook(favour)
    generation = by_name(run_smoke(tiny_model))["batched_generation_matches_per_row"]
    assert generation["passed"] and generation["reason"].startswith("no EOS"), generation
    assert "generated lengths [6, 6]" in generation["reason"], generation
