"""Tiny Hugging Face snapshot folders for the import/parity tests: random Llama/Mistral models, saved by
``save_pretrained`` (safetensors), with weights spread wide enough that logits are far from ties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers

from model_core.importers.hf import import_hf
from registry.cli.import_cmd import file_digest

BASE: dict[str, Any] = {
    "vocab_size": 96,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 48,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
}
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def hf_model(arch: str = "llama", seed: int = 0, **overrides: Any) -> transformers.PreTrainedModel:
    """A random model in float32: linear weights N(0, 0.15), norm weights around 1, embeddings N(0, 1)."""
    kwargs = {**BASE, **overrides}
    if arch == "mistral":
        kwargs.setdefault("sliding_window", None)
        config: Any = transformers.MistralConfig(**kwargs)
        model: Any = transformers.MistralForCausalLM(config)
    else:
        config = transformers.LlamaConfig(**kwargs)
        model = transformers.LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=gen))
    return model.eval()


def save_snapshot(
    model: transformers.PreTrainedModel, folder: Path, dtype: str = "float32", shard_size: str | None = None
) -> Path:
    model = model.to(TORCH_DTYPES[dtype])
    if shard_size is None:
        model.save_pretrained(folder)
    else:
        model.save_pretrained(folder, max_shard_size=shard_size)
    return folder


def import_snapshot(src: Path, out: Path, name: str = "test/tiny") -> Path:
    """``import hf`` of ``src`` into ``out``; returns the pack folder."""
    return import_hf(src, out, name=name, digest_of=file_digest).parent
