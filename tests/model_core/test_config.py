"""Config validation (seed bug 6: num_kv_heads=0 was a ZeroDivisionError, zero sizes were accepted)."""

from __future__ import annotations

import pytest

from model_core.config import ModelConfig
from model_core.errors import ConfigInvalid


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_kv_heads", 0),
        ("vocab_size", 0),
        ("d_model", 0),
        ("num_layers", 0),
        ("dim_ff", -1),
        ("max_seq_len", 0),
        ("num_heads", 3),  # does not divide d_model=512
        ("num_kv_heads", 3),  # does not divide num_heads=8
        ("dropout", 1.5),
        ("rope_theta", float("nan")),
        ("rmsnorm_eps", 0.0),
        ("tie_weights", "yes"),
        ("d_model", 7.5),
        ("dtype", "int8"),
    ],
)
def test_bad_values_are_refused_naming_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigInvalid) as e:
        ModelConfig(**{field: value})  # type: ignore[arg-type]
    assert e.value.field == field
    assert field in str(e.value) and repr(value) in str(e.value)


def test_odd_head_dim_is_refused_for_rope() -> None:
    with pytest.raises(ConfigInvalid, match="head_dim"):
        ModelConfig(d_model=24, num_heads=8, num_kv_heads=2)


def test_from_dict_accepts_seed_manifest_config_and_reports_unknown_keys() -> None:
    seed = {
        "vocab_size": 32000,
        "d_model": 512,
        "num_layers": 8,
        "num_heads": 8,
        "num_kv_heads": 2,
        "dim_ff": 2048,
        "dropout": 0.0,
        "max_seq_len": 4096,
        "rope_theta": 10000,
        "tie_weights": True,
        "architectures": ["RAGE"],
    }
    cfg, unknown = ModelConfig.from_dict(seed)
    assert cfg.rope_theta == 10000.0 and cfg.num_kv_heads == 2
    assert unknown == ["architectures"]


def test_parameter_count_closed_form_matches_a_hand_count() -> None:
    cfg = ModelConfig(vocab_size=10, d_model=4, num_layers=1, num_heads=2, num_kv_heads=1, dim_ff=6)
    # embed 40; q,o 16+16; k,v 8+8; w1 48; w2 24; norms 4+4; final norm 4; tied head 0
    assert cfg.parameter_count() == 40 + 32 + 16 + 48 + 24 + 8 + 4
    untied = ModelConfig(**{**cfg.to_dict(), "tie_weights": False})
    assert untied.parameter_count() == cfg.parameter_count() + 40


def test_absurd_sizes_are_refused_before_anything_is_allocated() -> None:
    with pytest.raises(ConfigInvalid, match="max_seq_len"):
        ModelConfig(max_seq_len=10**12)
    with pytest.raises(ConfigInvalid, match="vocab_size"):
        ModelConfig(vocab_size=10**18)
