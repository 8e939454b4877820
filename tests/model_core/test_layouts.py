"""One core, two layouts: the seed's packed w1 becomes gate and up views (no copy), and each layout's
expected tensor names and shapes follow the config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from model_core.config import ModelConfig
from model_core.errors import PackInvalid
from model_core.layers import SwiGLU
from model_core.layouts import HF_LLAMA, SEED, check_tensor_table, plan_layout
from model_core.loader import load_pack
from tests.model_core.conftest import rewrite_shard, shard_with

CFG = ModelConfig(
    vocab_size=10, d_model=8, num_layers=2, num_heads=2, num_kv_heads=1, dim_ff=12, tie_weights=False
)


def test_packed_w1_loads_as_two_views_and_saves_stacked() -> None:
    mlp = SwiGLU(8, 12)
    w1 = torch.randn(24, 8)
    w2 = torch.randn(8, 12)
    mlp.load_state_dict({"w1.weight": w1, "w2.weight": w2}, assign=True)
    assert mlp.gate_proj.weight.data_ptr() == w1.data_ptr()
    assert mlp.up_proj.weight.data_ptr() == w1[12:].data_ptr()
    assert list(mlp.state_dict()) == ["w1.weight", "w2.weight"]
    assert torch.equal(mlp.state_dict()["w1.weight"], w1)
    x = torch.randn(3, 8)
    gate, up = (x @ w1.T).chunk(2, dim=-1)  # the seed's fused formula
    torch.testing.assert_close(mlp(x), (torch.nn.functional.silu(gate) * up) @ w2.T)


def test_layout_names() -> None:
    seed, hf = plan_layout(CFG, SEED), plan_layout(CFG, HF_LLAMA)
    assert seed.shapes["layers.1.mlp.w1.weight"] == (24, 8)
    assert hf.shapes["model.layers.1.mlp.gate_proj.weight"] == (12, 8)
    assert hf.shapes["model.layers.0.self_attn.k_proj.weight"] == (4, 8)
    assert hf.shapes["model.layers.0.mlp.down_proj.weight"] == (8, 12)
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= hf.required()
    assert len(hf.shapes) == 3 + 2 * 9 and len(seed.shapes) == 3 + 2 * 8
    cores = {s.core for s in hf.sources}
    assert cores == {s.core for s in seed.sources}  # both fill exactly the same core parameters
    tied = plan_layout(ModelConfig(**{**CFG.to_dict(), "tie_weights": True}), HF_LLAMA)
    assert "lm_head.weight" not in tied.required()


def test_table_errors_name_the_layout_tensor() -> None:
    plan = plan_layout(CFG, HF_LLAMA)
    table = {name: ("F32", shape) for name, shape in plan.shapes.items()}
    assert check_tensor_table(plan, table, {}) == "float32"
    with pytest.raises(PackInvalid, match=re.escape("'model.layers.10.x'")):
        check_tensor_table(plan, {**table, "model.layers.10.x": ("F32", (1,))}, {})
    with pytest.raises(PackInvalid, match=re.escape("'model.norm.weight' has dtype I8")):
        check_tensor_table(plan, {**table, "model.norm.weight": ("I8", (8,))}, {})


def test_a_tied_seed_pack_may_store_its_one_copy_as_lm_head(tiny_pack: Path) -> None:
    name = shard_with(tiny_pack, "embed.weight")
    rewrite_shard(tiny_pack, name, lambda t: t.__setitem__("lm_head.weight", t.pop("embed.weight")))
    model = load_pack(tiny_pack).model
    assert model.lm_head.weight is model.embed.weight
