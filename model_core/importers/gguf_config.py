"""A GGUF file's ``llama`` metadata as a Hugging Face ``LlamaForCausalLM`` ``config.json``.

Only what the HF Llama layout expresses is accepted: one architecture, full-width rotary embeddings,
rope scaling none, linear or Llama 3's (recovered from ``rope_freqs.weight``); anything else is refused
with a sentence naming the key and its value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np

from model_core.errors import q
from model_core.importers.gguf_read import GGUFFile, GGUFRefused
from model_core.importers.gguf_rope import llama3_scaling

ARCHITECTURE = "llama"
DTYPES = ("float16", "bfloat16", "float32")
ROPE_FREQS = "rope_freqs.weight"  # Llama 3 rope scaling, as per-frequency divisors


@dataclass(frozen=True)
class LlamaShape:
    """The sizes the tensor conversion needs (rows of Q/K per head, how many layers)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int


def check_architecture(f: GGUFFile) -> None:
    arch = f.get_str("general.architecture")
    if arch != ARCHITECTURE:
        raise GGUFRefused(
            f.path, "general.architecture", f"is {q(arch)}; only {ARCHITECTURE!r} GGUF files can be imported"
        )


def _positive(f: GGUFFile, key: str, default: int | None = None) -> int:
    value = f.get_int(key, default)
    if value <= 0:
        raise GGUFRefused(f.path, key, f"must be a positive integer, not {value}")
    return value


def read_shape(f: GGUFFile, vocab_size: int) -> LlamaShape:
    """Sizes from the metadata; ``vocab_size`` (the token count) unless ``llama.vocab_size`` pads it."""
    a = ARCHITECTURE
    n_heads = _positive(f, f"{a}.attention.head_count")
    n_kv = _positive(f, f"{a}.attention.head_count_kv", n_heads)
    hidden = _positive(f, f"{a}.embedding_length")
    if n_heads % n_kv:
        raise GGUFRefused(
            f.path, f"{a}.attention.head_count_kv", f"({n_kv}) must divide the head count ({n_heads})"
        )
    head_dim = _positive(f, f"{a}.attention.key_length", hidden // n_heads if hidden % n_heads == 0 else 0)
    value_dim = _positive(f, f"{a}.attention.value_length", head_dim)
    if value_dim != head_dim:
        raise GGUFRefused(
            f.path, f"{a}.attention.value_length", f"({value_dim}) differs from the key length ({head_dim})"
        )
    if head_dim % 2:
        raise GGUFRefused(
            f.path, f"{a}.attention.key_length", f"({head_dim}) must be even for rotary embeddings"
        )
    rope_dim = f.get_int(f"{a}.rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise GGUFRefused(
            f.path,
            f"{a}.rope.dimension_count",
            f"is {rope_dim}; only rotary embeddings over the whole head ({head_dim}) are supported",
        )
    if f.get_int(f"{a}.expert_count", 0):
        raise GGUFRefused(f.path, f"{a}.expert_count", "is set; mixture-of-experts models are not supported")
    n_tokens, vocab_size = vocab_size, f.get_int(f"{a}.vocab_size", vocab_size)
    if vocab_size < n_tokens:
        raise GGUFRefused(
            f.path, f"{a}.vocab_size", f"({vocab_size}) is smaller than the token list ({n_tokens} tokens)"
        )
    return LlamaShape(
        n_layers=_positive(f, f"{a}.block_count"),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=_positive(f, f"{a}.feed_forward_length"),
        vocab_size=vocab_size,
    )


def _rope_freqs(f: GGUFFile, theta: float, head_dim: int) -> dict[str, Any] | None:
    tensor = next((t for t in f.reader.tensors if t.name == ROPE_FREQS), None)
    if tensor is None:
        return None
    field = f"tensor {ROPE_FREQS!r}"
    if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
        raise GGUFRefused(f.path, field, f"has type {tensor.tensor_type.name}; llama.cpp writes it as F32")
    try:
        return llama3_scaling(np.asarray(tensor.data), theta, head_dim)
    except ValueError as e:
        raise GGUFRefused(f.path, field, str(e)) from None


def rope_scaling(f: GGUFFile, theta: float, head_dim: int) -> dict[str, Any] | None:
    """HF ``rope_scaling``: ``llama3`` from the ``rope_freqs.weight`` divisors, or ``linear`` from
    ``llama.rope.scaling.*`` (or the older ``llama.rope.scale_linear``)."""
    a = ARCHITECTURE
    key = f"{a}.rope.scaling.type"
    kind = f.get_str(key, "none")
    llama3 = _rope_freqs(f, theta, head_dim)
    if llama3 is not None:
        if kind != "none":
            raise GGUFRefused(f.path, key, f"is {q(kind)} but {ROPE_FREQS} holds Llama 3 frequency divisors")
        return llama3
    if kind == "none" and f.has(f"{a}.rope.scale_linear"):
        kind, factor = "linear", f.get_float(f"{a}.rope.scale_linear")
    elif kind == "linear":
        factor = f.get_float(f"{a}.rope.scaling.factor")
    elif kind != "none":
        raise GGUFRefused(f.path, key, f"is {q(kind)}; only 'none' and 'linear' rope scaling are supported")
    if kind == "none" or factor == 1.0:
        return None
    if factor <= 0:
        raise GGUFRefused(f.path, f"{a}.rope.scaling.factor", f"must be positive, not {factor}")
    return {"rope_type": "linear", "factor": factor}


def hf_config(
    f: GGUFFile, shape: LlamaShape, *, tied: bool, dtype: str, special_ids: dict[str, int]
) -> dict[str, Any]:
    """The ``config.json`` of a ``LlamaForCausalLM`` holding this file's weights."""
    a = ARCHITECTURE
    eps = f.get_float(f"{a}.attention.layer_norm_rms_epsilon")
    theta = f.get_float(f"{a}.rope.freq_base", 10000.0)
    if not eps > 0:
        raise GGUFRefused(f.path, f"{a}.attention.layer_norm_rms_epsilon", f"must be positive, not {eps}")
    if not theta > 0:
        raise GGUFRefused(f.path, f"{a}.rope.freq_base", f"must be positive, not {theta}")
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.n_layers,
        "num_attention_heads": shape.n_heads,
        "num_key_value_heads": shape.n_kv_heads,
        "head_dim": shape.head_dim,
        "max_position_embeddings": _positive(f, f"{a}.context_length"),
        "rms_norm_eps": eps,
        "rope_theta": theta,
        "rope_scaling": rope_scaling(f, theta, shape.head_dim),
        "vocab_size": shape.vocab_size,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "torch_dtype": dtype,
    }
    for name in ("bos", "eos", "pad"):
        if name in special_ids:
            config[f"{name}_token_id"] = special_ids[name]
    return config
