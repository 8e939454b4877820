"""GGUF ``llama`` tensors -> Hugging Face Llama tensors: names, shapes, dequantization, rotary layout.

llama.cpp's converter reorders the rows of ``q_proj`` and ``k_proj`` inside each head so that the two
halves HF rotates together (``rotate_half``) become adjacent pairs (GGUF's interleaved rotary layout);
:func:`unpermute_rotary` applies the inverse. Dequantization is the ``gguf`` package's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import gguf
import numpy as np
import torch

from model_core.errors import q
from model_core.importers.gguf_config import ROPE_FREQS, LlamaShape
from model_core.importers.gguf_read import GGUFFile, GGUFRefused

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")


@dataclass(frozen=True)
class TensorPlan:
    """One GGUF tensor and where it goes: its HF name, HF shape, and rotary heads to un-permute (0: none)."""

    tensor: gguf.ReaderTensor
    hf_name: str
    hf_shape: tuple[int, ...]
    rotary_heads: int

    def nbytes(self, dtype: torch.dtype) -> int:
        return int(np.prod(self.hf_shape)) * torch.empty((), dtype=dtype).element_size()


def hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GLOBAL:
        return _GLOBAL[gguf_name]
    m = _BLOCK.fullmatch(gguf_name)
    if m and m.group(2) in _LAYER:
        return f"model.layers.{int(m.group(1))}.{_LAYER[m.group(2)]}"
    return None


def _expected_shapes(s: LlamaShape, tied: bool) -> dict[str, tuple[int, ...]]:
    h, kv = s.hidden_size, s.n_kv_heads * s.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (s.vocab_size, h),
        "model.norm.weight": (h,),
    }
    if not tied:
        shapes["lm_head.weight"] = (s.vocab_size, h)
    for i in range(s.n_layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (s.n_heads * s.head_dim, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, s.n_heads * s.head_dim),
            p + "mlp.gate_proj.weight": (s.intermediate_size, h),
            p + "mlp.up_proj.weight": (s.intermediate_size, h),
            p + "mlp.down_proj.weight": (h, s.intermediate_size),
        }
    return shapes


def is_tied(f: GGUFFile) -> bool:
    return not any(t.name == "output.weight" for t in f.reader.tensors)


def plan_tensors(f: GGUFFile, shape: LlamaShape) -> list[TensorPlan]:
    """Every tensor of the file mapped to its HF name and checked against the config's shapes."""
    expected = _expected_shapes(shape, is_tied(f))
    plans: list[TensorPlan] = []
    for t in f.reader.tensors:
        if t.name == ROPE_FREQS:
            continue  # read into config.json's rope_scaling (gguf_config), not a weight
        name = hf_name(t.name)
        field = f"tensor {q(t.name)}"
        if name is None or name not in expected:
            raise GGUFRefused(f.path, field, "has no place in a Hugging Face Llama model")
        hf_shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGUF lists dimensions innermost first
        if hf_shape != expected[name]:
            raise GGUFRefused(
                f.path, field, f"has shape {list(hf_shape)}, the metadata implies {list(expected[name])}"
            )
        heads = shape.n_heads if name.endswith("q_proj.weight") else 0
        heads = shape.n_kv_heads if name.endswith("k_proj.weight") else heads
        plans.append(TensorPlan(t, name, hf_shape, heads))
    missing = sorted(set(expected) - {p.hf_name for p in plans})
    if missing:
        raise GGUFRefused(
            f.path, f"tensor for {q(missing[0])}", f"is missing ({len(missing)} missing in all)"
        )
    return plans


def unpermute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """GGUF's interleaved rotary row order of a Q or K projection back to HF's half-split order."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def convert(f: GGUFFile, plan: TensorPlan, dtype: torch.dtype) -> torch.Tensor:
    """One tensor dequantized, un-permuted and cast to ``dtype``; non-finite values are refused."""
    field = f"tensor {q(plan.tensor.name)}"
    try:
        # a plain view of the mapped bytes: numpy's memmap subclass costs a Python call per block slice
        values = gguf.quants.dequantize(np.asarray(plan.tensor.data), plan.tensor.tensor_type)
    except (NotImplementedError, ValueError) as e:
        raise GGUFRefused(f.path, field, f"cannot be dequantized: {q(str(e), 120)}") from None
    values = np.require(np.asarray(values, dtype=np.float32).reshape(plan.hf_shape), requirements=["C", "W"])
    if plan.rotary_heads:
        values = unpermute_rotary(values, plan.rotary_heads)
    if not np.isfinite(values).all():
        raise GGUFRefused(f.path, field, "has values that are not finite")
    limit = torch.finfo(dtype).max
    if values.size and float(np.abs(values).max()) > limit:
        name = str(dtype).removeprefix("torch.")
        raise GGUFRefused(
            f.path, field, f"has values beyond the range of {name} ({limit:g}); try --dtype float32"
        )
    return torch.from_numpy(np.ascontiguousarray(values)).to(dtype)  # unpermute may leave a strided view


def shard_groups(plans: list[TensorPlan], dtype: torch.dtype, max_bytes: int) -> list[list[TensorPlan]]:
    """Plans in file order, cut into groups of at most ``max_bytes`` (a bigger tensor sits alone)."""
    groups: list[list[TensorPlan]] = [[]]
    size = 0
    for plan in plans:
        n = plan.nbytes(dtype)
        if groups[-1] and size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(plan)
        size += n
    return groups


def iter_converted(
    f: GGUFFile, group: list[TensorPlan], dtype: torch.dtype
) -> Iterator[tuple[TensorPlan, torch.Tensor]]:
    for plan in group:
        yield plan, convert(f, plan, dtype)
