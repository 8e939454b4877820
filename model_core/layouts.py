"""Tensor layouts a pack may use, mapped onto the one transformer core; torch-free.

``seed``: the seed's names (``embed.weight``, ``layers.N.attn.q_proj.weight``, ``layers.N.mlp.w1.weight``
with gate and up stacked, ``layers.N.mlp.w2.weight``...). ``hf-llama``: Hugging Face Llama names
(``model.embed_tokens.weight``, ``model.layers.N.self_attn.q_proj.weight``, ``model.layers.N.mlp.gate_proj``
and ``up_proj`` separately...). Each core parameter takes one pack tensor, or (the seed's ``w1``) one half
of one, so both layouts load as views of the shard bytes. Checks here name the pack's own tensor names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from model_core.config import ModelConfig
from model_core.errors import PackInvalid, q

SEED = "seed"
HF_LLAMA = "hf-llama"
LAYOUTS: tuple[str, ...] = (SEED, HF_LLAMA)
V = TypeVar("V")
WEIGHT_DTYPES: dict[str, str] = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
# What the layouts call the core's weights (per layer: the part after ``layers.N.``).
_SEED_LAYER = {
    "norm1.weight": "norm1.weight",
    "attn.q_proj.weight": "attn.q_proj.weight",
    "attn.k_proj.weight": "attn.k_proj.weight",
    "attn.v_proj.weight": "attn.v_proj.weight",
    "attn.o_proj.weight": "attn.o_proj.weight",
    "norm2.weight": "norm2.weight",
    "mlp.w2.weight": "mlp.w2.weight",
}
_HF_LAYER = {
    "norm1.weight": "input_layernorm.weight",
    "attn.q_proj.weight": "self_attn.q_proj.weight",
    "attn.k_proj.weight": "self_attn.k_proj.weight",
    "attn.v_proj.weight": "self_attn.v_proj.weight",
    "attn.o_proj.weight": "self_attn.o_proj.weight",
    "norm2.weight": "post_attention_layernorm.weight",
    "mlp.gate_proj.weight": "mlp.gate_proj.weight",
    "mlp.up_proj.weight": "mlp.up_proj.weight",
    "mlp.w2.weight": "mlp.down_proj.weight",
}


@dataclass(frozen=True)
class Source:
    """Where one core parameter comes from: a pack tensor, or one half (``part`` 0 or 1) of it."""

    core: str
    tensor: str
    part: int | None = None


@dataclass(frozen=True)
class LayoutPlan:
    """The pack tensors a config needs in one layout and how they fill the core's parameters."""

    layout: str
    shapes: dict[str, tuple[int, ...]]  # every pack tensor the layout names (the tied head included)
    sources: tuple[Source, ...]
    embed: str
    head: str
    tied: bool

    def required(self) -> set[str]:
        """Tensors the pack must hold: all but a tied head (which may be absent, or a copy of the embedding)."""
        return set(self.shapes) - ({self.head} if self.tied else set())


def check_layout(layout: object) -> str:
    if layout not in LAYOUTS:
        raise PackInvalid(f"manifest layout {q(layout)} is not supported; use one of {', '.join(LAYOUTS)}")
    assert isinstance(layout, str)
    return layout


def plan_layout(cfg: ModelConfig, layout: str) -> LayoutPlan:
    """The expected tensors of ``cfg`` in ``layout``, with their shapes, and the core parameter each fills."""
    layout = check_layout(layout)
    d, hd, f, v = cfg.d_model, cfg.head_dim, cfg.dim_ff, cfg.vocab_size
    core_shapes: dict[str, tuple[int, ...]] = {
        "norm1.weight": (d,),
        "attn.q_proj.weight": (cfg.num_heads * hd, d),
        "attn.k_proj.weight": (cfg.num_kv_heads * hd, d),
        "attn.v_proj.weight": (cfg.num_kv_heads * hd, d),
        "attn.o_proj.weight": (d, cfg.num_heads * hd),
        "norm2.weight": (d,),
        "mlp.gate_proj.weight": (f, d),
        "mlp.up_proj.weight": (f, d),
        "mlp.w2.weight": (d, f),
    }
    shapes: dict[str, tuple[int, ...]] = {}
    sources: list[Source] = []
    hf = layout == HF_LLAMA
    embed, head, norm = (
        ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight")
        if hf
        else ("embed.weight", "lm_head.weight", "final_norm.weight")
    )
    shapes[embed] = (v, d)
    sources.append(Source("embed.weight", embed))
    for i in range(cfg.num_layers):
        names = _HF_LAYER if hf else _SEED_LAYER
        prefix = f"model.layers.{i}." if hf else f"layers.{i}."
        for core, shape in core_shapes.items():
            if core in names:
                shapes[prefix + names[core]] = shape
                sources.append(Source(f"layers.{i}.{core}", prefix + names[core]))
        if not hf:
            w1 = f"{prefix}mlp.w1.weight"
            shapes[w1] = (2 * f, d)
            sources.append(Source(f"layers.{i}.mlp.gate_proj.weight", w1, part=0))
            sources.append(Source(f"layers.{i}.mlp.up_proj.weight", w1, part=1))
    if cfg.final_norm:
        shapes[norm] = (d,)
        sources.append(Source("final_norm.weight", norm))
    shapes[head] = (v, d)
    sources.append(Source("lm_head.weight", embed if cfg.tie_weights else head))
    return LayoutPlan(layout, shapes, tuple(sources), embed, head, cfg.tie_weights)


def check_tensor_table(
    plan: LayoutPlan,
    table: Mapping[str, tuple[str, tuple[int, ...]]],
    origin: Mapping[str, str],
    *,
    config_dtype: str | None = None,
    what: str = "the manifest config",
) -> str:
    """Coverage, shapes and dtypes of the pack's tensors (name -> (safetensors dtype, shape)).

    Returns the weights' dtype name (float32, float16 or bfloat16).

    Raises:
        PackInvalid: naming the pack tensor (and its shard) at fault.
    """

    def where(name: str) -> str:
        return f" (in {q(origin[name])})" if name in origin else ""

    def inside(name: str) -> str:
        return f"in {q(origin[name])}; " if name in origin else ""

    table = with_tied_embedding(plan, dict(table))
    missing = sorted(plan.required() - set(table), key=_natural)
    if missing:
        raise PackInvalid(
            f"the pack lacks {len(missing)} tensor(s) {what} needs, e.g. {', '.join(map(q, missing[:3]))}",
            key=missing[0],
        )
    unexpected = sorted(set(table) - set(plan.shapes), key=_natural)
    if unexpected:
        raise PackInvalid(
            f"the pack has {len(unexpected)} tensor(s) the model does not use, e.g. "
            f"{', '.join(map(q, unexpected[:3]))}{where(unexpected[0])}",
            key=unexpected[0],
        )
    for name, shape in plan.shapes.items():
        if name in table and tuple(table[name][1]) != shape:
            raise PackInvalid(
                f"tensor {q(name)} has shape {tuple(table[name][1])} but {what} needs {shape} "
                f"({inside(name)}config and weights disagree)",
                key=name,
            )
    bad = sorted((n for n in table if table[n][0] not in WEIGHT_DTYPES), key=_natural)
    if bad:
        raise PackInvalid(
            f"tensor {q(bad[0])} has dtype {table[bad[0]][0]}; weights must be F32, F16 or BF16{where(bad[0])}",
            key=bad[0],
        )
    kinds = sorted({table[n][0] for n in table})
    if len(kinds) > 1:
        first = {k: next(n for n in sorted(table, key=_natural) if table[n][0] == k) for k in kinds}
        example = ", ".join(f"{q(n)} is {k}" for k, n in first.items())
        raise PackInvalid(f"the pack mixes weight dtypes ({example}); use one", key=first[kinds[-1]])
    dtype = WEIGHT_DTYPES[kinds[0]]
    if config_dtype is not None and config_dtype != dtype:
        raise PackInvalid(f"the config says dtype {config_dtype} but the weights are {dtype}")
    return dtype


def with_tied_embedding(plan: LayoutPlan, mapping: dict[str, V]) -> dict[str, V]:
    """A tied pack may store its one copy under the head's name only: it then fills the embedding too."""
    if plan.tied and plan.embed not in mapping and plan.head in mapping:
        return {**mapping, plan.embed: mapping[plan.head]}
    return mapping


def tie_mismatch(plan: LayoutPlan) -> str:
    """The sentence for a tied head stored as a different tensor from the embedding."""
    flag = "tie_word_embeddings" if plan.layout == HF_LLAMA else "tie_weights"
    return f"{flag} is true but {plan.embed} and {plan.head} differ; store one copy or two identical ones"


def _natural(name: str) -> tuple[object, ...]:
    """Sort key that puts layers.2 before layers.10."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split("."))
