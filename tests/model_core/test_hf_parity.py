"""The core is Hugging Face's Llama: random small models saved by ``save_pretrained``, imported with
``import hf`` and loaded by ``load_pack``, give transformers' logits (1e-4 relative in float32) and the
same greedy tokens. GQA and MHA, tied and untied, rope theta, llama3 and linear rope scaling, an explicit
head_dim, sharded weights, Mistral, float32 and bfloat16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model_core.generate import greedy_generate
from model_core.loader import load_pack
from tests.model_core.hf_snapshots import LLAMA3_ROPE, hf_model, import_snapshot, save_snapshot

CASES: dict[str, dict[str, Any]] = {
    "gqa-untied": {"tie_word_embeddings": False},
    "gqa-tied-theta": {"tie_word_embeddings": True, "rope_theta": 500000.0},
    "llama3-rope": {"rope_theta": 500000.0, "rope_scaling": LLAMA3_ROPE},
    "linear-rope-mha": {"num_key_value_heads": 4, "rope_scaling": {"rope_type": "linear", "factor": 4.0}},
    "mqa-head-dim": {"num_key_value_heads": 1, "head_dim": 16, "tie_word_embeddings": True},
}
# bfloat16: both sides round to 8 mantissa bits, in different orders; a few units of bf16 precision.
BF16_RELATIVE = 3e-2


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def _prompts(vocab: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(seed))


def _hf_greedy(model: Any, ids: torch.Tensor, n: int) -> torch.Tensor:
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False
        )
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_float32_logits_and_greedy_tokens_match_transformers(tmp_path: Path, case: str) -> None:
    hf = hf_model(**CASES[case])
    pack = import_snapshot(save_snapshot(hf, tmp_path / "snap"), tmp_path / "pack")
    loaded = load_pack(pack)
    assert loaded.layout == "hf-llama" and loaded.dtype == "float32"
    ids = _prompts(hf.config.vocab_size)
    with torch.no_grad():
        expected = hf(ids).logits
        got = loaded.model(ids)
    assert _relative(got, expected) <= 1e-4
    assert torch.equal(greedy_generate(loaded.model, ids, 16), _hf_greedy(hf, ids, 16))


@pytest.mark.parametrize("case", ["gqa-tied-theta", "llama3-rope"])
def test_bfloat16_logits_and_greedy_tokens_match_transformers(tmp_path: Path, case: str) -> None:
    hf = hf_model(**CASES[case])
    pack = import_snapshot(save_snapshot(hf, tmp_path / "snap", "bfloat16"), tmp_path / "pack")
    loaded = load_pack(pack)
    assert loaded.dtype == "bfloat16" and loaded.model.embed.weight.dtype == torch.bfloat16
    assert hf.dtype == torch.bfloat16
    ids = _prompts(hf.config.vocab_size)
    with torch.no_grad():
        expected = hf(ids).logits
        got = loaded.model(ids)
    assert _relative(got, expected) <= BF16_RELATIVE
    assert torch.equal(greedy_generate(loaded.model, ids, 8), _hf_greedy(hf, ids, 8))


def test_sharded_snapshot_with_an_index_matches(tmp_path: Path) -> None:
    hf = hf_model(tie_word_embeddings=False, num_hidden_layers=3)
    snap = save_snapshot(hf, tmp_path / "snap", shard_size="30KB")
    assert (snap / "model.safetensors.index.json").is_file()
    pack = import_snapshot(snap, tmp_path / "pack")
    loaded = load_pack(pack)
    assert len(loaded.manifest.shards) > 1
    ids = _prompts(hf.config.vocab_size)
    with torch.no_grad():
        assert _relative(loaded.model(ids), hf(ids).logits) <= 1e-4


def test_mistral_matches_transformers(tmp_path: Path) -> None:
    hf = hf_model("mistral", sliding_window=64)  # a window as long as the context changes nothing
    pack = import_snapshot(save_snapshot(hf, tmp_path / "snap"), tmp_path / "pack")
    ids = _prompts(hf.config.vocab_size)
    loaded = load_pack(pack)
    with torch.no_grad():
        assert _relative(loaded.model(ids), hf(ids).logits) <= 1e-4
    assert torch.equal(greedy_generate(loaded.model, ids, 8), _hf_greedy(hf, ids, 8))


def test_hf_weights_are_views_of_the_verified_shard_bytes(tmp_path: Path) -> None:
    """Zero-copy for the HF layout too: gate and up are their own tensors, nothing is stacked."""
    hf = hf_model(tie_word_embeddings=True)
    loaded = load_pack(import_snapshot(save_snapshot(hf, tmp_path / "snap"), tmp_path / "pack"))
    model = loaded.model
    assert model.lm_head.weight is model.embed.weight
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert len(ptrs) == len(list(model.parameters()))  # no two parameters share a start: no stacking
    span = max(ptrs) - min(ptrs)
    assert span < loaded.total_bytes  # all inside the one verified shard buffer
