"""Random-weight models for trying the system and for tests: no download from any hub.

Weights are scaled so greedy generation does not collapse into one repeated token at once.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from model_core.config import ModelConfig
from model_core.errors import ModelCoreError
from model_core.model import Transformer

PRESETS: dict[str, ModelConfig] = {
    # Small enough that the whole smoke suite runs in about a second.
    "tiny": ModelConfig(
        vocab_size=256, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2, dim_ff=172, max_seq_len=256
    ),
    "small": ModelConfig(
        vocab_size=4096, d_model=256, num_layers=4, num_heads=8, num_kv_heads=2, dim_ff=688, max_seq_len=1024
    ),
}

# Larger than a training init: random weights need a strong signal for varied argmax tokens.
DEMO_INIT_STD = 0.35


def demo_config(preset: str) -> ModelConfig:
    try:
        return PRESETS[preset]
    except KeyError:
        raise ModelCoreError(f"unknown demo preset {preset!r}; use one of {', '.join(PRESETS)}") from None


def demo_state_dict(
    preset: Literal["tiny", "small"] | str = "tiny", seed: int = 0
) -> tuple[dict[str, Tensor], ModelConfig]:
    """A deterministic random state dict (seed-format keys, tied weights shared) and its config."""
    cfg = demo_config(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(cfg, init_std=DEMO_INIT_STD)
    return {k: v.detach() for k, v in model.state_dict().items()}, cfg
