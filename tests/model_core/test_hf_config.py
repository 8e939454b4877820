"""Hugging Face config.json -> the core's ModelConfig: real configs map, both rope spellings are read, and
fields the core cannot express are refused naming the file, the field and the value."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
import transformers

from model_core.config import ModelConfig, RopeScaling
from model_core.errors import ConfigInvalid
from model_core.format.hf_config import model_config_from_hf
from model_core.layers import rope_inv_freq

# SmolLM2-135M's config.json (transformers 4 spelling), trimmed of token ids.
SMOLLM2: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "hidden_act": "silu",
    "hidden_size": 576,
    "initializer_range": 0.041666666666666664,
    "intermediate_size": 1536,
    "is_llama_config": True,
    "max_position_embeddings": 8192,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 9,
    "num_hidden_layers": 30,
    "num_key_value_heads": 3,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_interleaved": False,
    "rope_scaling": None,
    "rope_theta": 100000,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.42.3",
    "use_cache": True,
    "vocab_size": 49152,
}
LLAMA32_ROPE = {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}


def test_smollm2_config_maps_to_the_core() -> None:
    cfg, ignored = model_config_from_hf(SMOLLM2)
    assert (cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.dim_ff) == (576, 30, 9, 3, 1536)
    assert (cfg.head_dim, cfg.vocab_size, cfg.max_seq_len, cfg.tie_weights) == (64, 49152, 8192, True)
    assert cfg.rope_theta == 100000.0 and cfg.rmsnorm_eps == 1e-5 and cfg.rope_scaling is None
    assert cfg.head_dim_override is None and cfg.dtype is None
    assert ignored == ["is_llama_config", "rope_interleaved"]


def test_llama32_rope_scaling_in_both_spellings() -> None:
    old = {**SMOLLM2, "rope_theta": 500000.0, "rope_scaling": LLAMA32_ROPE}
    new = {k: v for k, v in old.items() if k not in ("rope_theta", "rope_scaling")}
    new["rope_parameters"] = {**LLAMA32_ROPE, "rope_theta": 500000.0}
    expected = RopeScaling("llama3", 32.0, 1.0, 4.0, 8192)
    for data in (old, new):
        cfg, _ = model_config_from_hf(data)
        assert cfg.rope_theta == 500000.0 and cfg.rope_scaling == expected


def test_transformers4_linear_scaling_uses_type() -> None:
    cfg, _ = model_config_from_hf({**SMOLLM2, "rope_scaling": {"type": "linear", "factor": 2}})
    assert cfg.rope_scaling == RopeScaling("linear", 2.0)


def test_explicit_head_dim_other_than_hidden_over_heads() -> None:
    cfg, _ = model_config_from_hf({**SMOLLM2, "head_dim": 32})
    assert cfg.head_dim == 32 and cfg.q_dim == 9 * 32 and cfg.kv_dim == 3 * 32
    assert ModelConfig.from_dict(cfg.to_dict())[0] == cfg  # the manifest's config round-trips


def test_rope_frequencies_equal_transformers() -> None:
    for rope in (LLAMA32_ROPE, {"rope_type": "linear", "factor": 4.0}):
        hf = transformers.LlamaConfig(
            hidden_size=256, num_attention_heads=2, rope_theta=500000.0, rope_scaling=dict(rope)
        )
        fn = transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS[rope["rope_type"]]
        expected, _ = fn(hf, "cpu")
        cfg, _ = model_config_from_hf(
            {
                **SMOLLM2,
                "hidden_size": 256,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "rope_theta": 500000.0,
                "rope_scaling": rope,
            }
        )
        got = rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling, "cpu")
        torch.testing.assert_close(got.float(), expected.float(), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        ({"model_type": "qwen2"}, "config.json field model_type='qwen2' is not supported"),
        ({"architectures": ["LlamaModel"]}, "config.json field architectures='LlamaModel' is not supported"),
        ({"attention_bias": True}, "config.json field attention_bias=True is not supported"),
        ({"hidden_act": "relu"}, "config.json field hidden_act='relu' is not supported"),
        ({"sliding_window": 4096}, "config.json field sliding_window=4096 is not supported"),
        ({"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "rope_scaling.rope_type='longrope'"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling lacks low_freq_factor"),
        (
            {"rope_scaling": {"rope_type": "linear", "factor": -1}},
            "rope_scaling.factor=-1.0 must be positive",
        ),
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5 is not supported"),
        ({"hidden_size": 0}, "config.json field hidden_size=0 must be positive"),
        ({"intermediate_size": "big"}, "config.json field intermediate_size='big' must be an integer"),
        ({"num_attention_heads": None}, "config.json lacks the field num_attention_heads"),
        ({"rms_norm_eps": 2.0}, "config.json field rms_norm_eps=2.0 must be in (0, 1)"),
    ],
)
def test_fields_the_core_cannot_express_are_refused(change: dict[str, Any], sentence: str) -> None:
    with pytest.raises(ConfigInvalid) as e:
        model_config_from_hf({**SMOLLM2, **change})
    assert sentence in e.value.message


def test_a_sliding_window_as_long_as_the_context_is_accepted() -> None:
    cfg, _ = model_config_from_hf(
        {**SMOLLM2, "model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": 8192}
    )
    assert cfg.max_seq_len == 8192


def test_seed_manifest_may_carry_rope_scaling() -> None:
    cfg, unknown = ModelConfig.from_dict({"rope_scaling": {"kind": "linear", "factor": 2}})
    assert cfg.rope_scaling == RopeScaling("linear", 2.0) and unknown == []
    with pytest.raises(ConfigInvalid, match=re.escape("rope_scaling.kind='ntk'")):
        ModelConfig.from_dict({"rope_scaling": {"kind": "ntk", "factor": 2.0}})
    with pytest.raises(ConfigInvalid, match=re.escape("rope_scaling.beta")):
        ModelConfig.from_dict({"rope_scaling": {"kind": "linear", "factor": 2.0, "beta": 1}})
