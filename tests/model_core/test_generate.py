"""Greedy generation (seed bug 5): per-row EOS, no wasted forward, mode restored, length checked up front."""

from __future__ import annotations

import pytest
import torch

from model_core.errors import SequenceTooLong
from model_core.generate import greedy_generate
from model_core.model import Transformer
from tests.model_core.conftest import left_pad


def _count_forwards(model: Transformer) -> list[int]:
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def test_rows_stop_at_their_own_eos_and_match_per_row_generation(tiny_model: Transformer) -> None:
    rows = [torch.randint(1, 64, (7,)), torch.randint(1, 64, (3,))]
    free = greedy_generate(tiny_model, rows[0][None], 6)
    eos = int(free[0, 7 + 1])  # row 0 emits this at its second step
    want = [greedy_generate(tiny_model, r[None], 6, eos_token_id=eos)[0, r.numel() :] for r in rows]
    ids, mask = left_pad(rows)
    got = greedy_generate(tiny_model, ids, 6, eos_token_id=eos, attention_mask=mask)
    assert want[0].numel() <= 2 and want[0][-1] == eos
    for r, w in enumerate(want):
        new = got[r, ids.size(1) :]
        assert torch.equal(new[: w.numel()], w)
        assert bool((new[w.numel() :] == eos).all())


def test_generation_stops_when_every_row_is_done(tiny_model: Transformer) -> None:
    prompt = torch.randint(1, 64, (1, 4))
    first = int(greedy_generate(tiny_model, prompt, 1)[0, -1])
    calls = _count_forwards(tiny_model)
    out = greedy_generate(tiny_model, prompt, 10, eos_token_id=first)
    assert out.shape == (1, 5) and len(calls) == 1


def test_one_forward_per_generated_token(tiny_model: Transformer) -> None:
    """The seed ran one more forward after the last token, whose logits nobody read."""
    calls = _count_forwards(tiny_model)
    out = greedy_generate(tiny_model, torch.randint(1, 64, (2, 4)), 5)
    assert out.shape == (2, 9) and len(calls) == 5


def test_training_mode_is_restored(tiny_model: Transformer) -> None:
    tiny_model.train()
    greedy_generate(tiny_model, torch.randint(1, 64, (1, 3)), 2)
    assert tiny_model.training


def test_too_long_generation_is_refused_before_any_work(tiny_model: Transformer) -> None:
    """The seed died mid-run past max_seq_len and lost what it had generated."""
    calls = _count_forwards(tiny_model)
    with pytest.raises(SequenceTooLong) as e:
        greedy_generate(tiny_model, torch.randint(1, 64, (1, 30)), 3)
    assert "33" in str(e.value) and "32" in str(e.value) and calls == []


def test_generation_up_to_max_seq_len_works(tiny_model: Transformer) -> None:
    out = greedy_generate(tiny_model, torch.randint(1, 64, (1, 30)), 2)
    assert out.shape == (1, 32)


def test_last_only_logits_are_the_full_forwards_last_position(tiny_model: Transformer) -> None:
    ids = torch.randint(1, 64, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        full = tiny_model(ids, attention_mask=mask)
        last = tiny_model(ids, attention_mask=mask, last_only=True)
        cache = tiny_model.new_cache(2, 8)
        cached = tiny_model(ids, attention_mask=mask, cache=cache, last_only=True)
    assert last.shape == (2, 1, 64)
    torch.testing.assert_close(last, full[:, -1:])
    torch.testing.assert_close(cached, full[:, -1:])


def test_generation_runs_the_output_head_on_the_last_position_only(tiny_model: Transformer) -> None:
    """The prefill's logits for every prompt position but the last were computed and thrown away."""
    rows: list[int] = []
    tiny_model.lm_head.register_forward_pre_hook(lambda _, args: rows.append(args[0].size(1)))
    greedy_generate(tiny_model, torch.randint(1, 64, (2, 6)), 3)
    assert rows == [1, 1, 1]
