"""The transformer's hyper-parameters, validated on construction so a bad manifest fails with a sentence.

Field names match the seed's ``RAGETransformerConfig`` so seed-format manifests load unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from model_core.errors import ConfigInvalid

# The weight dtypes a pack may use; the model runs in the pack's dtype (never silently upcast).
FLOAT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
# Sanity caps, far above real models, so a hostile config cannot overflow shapes or allocate a huge table.
MAX_DIMENSION = 2**24
MAX_SEQ_LEN = 2**22
ROPE_SCALING_KINDS: tuple[str, ...] = ("linear", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling as Hugging Face defines it: ``linear`` (every frequency / factor) or ``llama3``
    (low frequencies / factor, high ones kept, a smooth blend between; Llama 3.1+)."""

    kind: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self) -> None:
        if self.kind not in ROPE_SCALING_KINDS:
            _bad("rope_scaling.kind", self.kind, f"must be one of {', '.join(ROPE_SCALING_KINDS)}")
        for name in ("factor", "low_freq_factor", "high_freq_factor"):
            _finite_number(f"rope_scaling.{name}", getattr(self, name))
            if getattr(self, name) <= 0:
                _bad(f"rope_scaling.{name}", getattr(self, name), "must be positive")
        if self.kind == "llama3":
            _positive_int(
                "rope_scaling.original_max_position_embeddings", self.original_max_position_embeddings
            )
            if self.high_freq_factor <= self.low_freq_factor:
                _bad(
                    "rope_scaling.high_freq_factor",
                    self.high_freq_factor,
                    f"must be greater than low_freq_factor ({self.low_freq_factor})",
                )

    @classmethod
    def from_dict(cls, data: Any) -> RopeScaling:
        if not isinstance(data, dict):
            raise ConfigInvalid(
                f"config field rope_scaling={data!r} must be an object", field="rope_scaling", value=data
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            _bad(f"rope_scaling.{unknown[0]}", data[unknown[0]], "is not a rope_scaling field")
        kwargs = dict(data)
        for name in ("factor", "low_freq_factor", "high_freq_factor"):
            if isinstance(kwargs.get(name), int) and not isinstance(kwargs[name], bool):
                kwargs[name] = float(kwargs[name])
        try:
            return cls(**kwargs)
        except TypeError:
            raise ConfigInvalid(
                "config field rope_scaling needs kind and factor", field="rope_scaling", value=data
            ) from None


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the decoder-only transformer (the seed's RAGETransformerConfig)."""

    vocab_size: int = 32000
    d_model: int = 512
    num_layers: int = 8
    num_heads: int = 8
    num_kv_heads: int = 2
    dim_ff: int = 2048
    dropout: float = 0.0
    max_seq_len: int = 4096
    rope_theta: float = 10000.0
    tie_weights: bool = True
    use_sdpa: bool = True
    final_norm: bool = True
    rmsnorm_eps: float = 1e-5
    # Not in the seed: the weights' dtype. None means "whatever the shards hold, uniformly".
    dtype: str | None = None
    # Not in the seed: a head size other than d_model // num_heads (Hugging Face's explicit head_dim).
    head_dim_override: int | None = None
    # Not in the seed: RoPE frequency scaling (None: plain RoPE).
    rope_scaling: RopeScaling | None = None

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "d_model",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "dim_ff",
            "max_seq_len",
        ):
            _positive_int(name, getattr(self, name))
        for name in ("tie_weights", "use_sdpa", "final_norm"):
            if not isinstance(getattr(self, name), bool):
                _bad(name, getattr(self, name), "must be true or false")
        _finite_number("dropout", self.dropout)
        if not 0.0 <= self.dropout < 1.0:
            _bad("dropout", self.dropout, "must be in [0, 1)")
        _finite_number("rope_theta", self.rope_theta)
        if self.rope_theta <= 1.0:
            _bad("rope_theta", self.rope_theta, "must be greater than 1")
        _finite_number("rmsnorm_eps", self.rmsnorm_eps)
        if not 0.0 < self.rmsnorm_eps < 1.0:
            _bad("rmsnorm_eps", self.rmsnorm_eps, "must be in (0, 1)")
        if self.head_dim_override is not None:
            _positive_int("head_dim_override", self.head_dim_override)
        elif self.d_model % self.num_heads:
            _bad("num_heads", self.num_heads, f"must divide d_model ({self.d_model})")
        if self.num_kv_heads > self.num_heads or self.num_heads % self.num_kv_heads:
            _bad("num_kv_heads", self.num_kv_heads, f"must divide num_heads ({self.num_heads})")
        if self.head_dim % 2:
            field = "d_model" if self.head_dim_override is None else "head_dim_override"
            _bad(field, getattr(self, field), f"gives an odd head_dim ({self.head_dim}); RoPE needs it even")
        if self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
            _bad("rope_scaling", self.rope_scaling, "must be a RopeScaling")
        if self.dtype is not None and self.dtype not in FLOAT_DTYPES:
            _bad("dtype", self.dtype, f"must be one of {', '.join(FLOAT_DTYPES)}")

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.d_model // self.num_heads

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def parameter_count(self) -> int:
        """The number of distinct parameters, in closed form (tied weights counted once)."""
        d, v, f = self.d_model, self.vocab_size, self.dim_ff
        attn = d * self.q_dim * 2 + d * self.kv_dim * 2  # q, o and k, v projections
        mlp = d * 2 * f + f * d  # fused gate+up, down
        per_layer = attn + mlp + 2 * d  # two RMSNorm weights
        head = 0 if self.tie_weights else v * d
        return v * d + self.num_layers * per_layer + (d if self.final_norm else 0) + head

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for optional in ("dtype", "head_dim_override", "rope_scaling"):
            if out[optional] is None:
                del out[optional]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> tuple[ModelConfig, list[str]]:
        """Build a config from a manifest's ``config`` object.

        Returns:
            The config and the sorted list of keys it did not know (ignored, reported by the caller).

        Raises:
            ConfigInvalid: naming the field and the value.
        """
        if not isinstance(data, dict):
            raise ConfigInvalid(f"config must be a JSON object, not {type(data).__name__}", field="config")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        kwargs = {k: v for k, v in data.items() if k in known}
        for name in ("dropout", "rope_theta", "rmsnorm_eps"):
            # JSON writers may emit 10000 for 10000.0; accept ints for float fields.
            if isinstance(kwargs.get(name), int) and not isinstance(kwargs[name], bool):
                kwargs[name] = float(kwargs[name])
        if kwargs.get("rope_scaling") is not None:
            kwargs["rope_scaling"] = RopeScaling.from_dict(kwargs["rope_scaling"])
        return cls(**kwargs), unknown


def _bad(name: str, value: Any, why: str) -> None:
    raise ConfigInvalid(f"config field {name}={value!r} {why}", field=name, value=value)


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        _bad(name, value, "must be an integer")
    if value <= 0:
        _bad(name, value, "must be positive")
    limit = MAX_SEQ_LEN if name == "max_seq_len" else MAX_DIMENSION
    if value > limit:
        _bad(name, value, f"is larger than {limit}; a manifest this big is not a model we can validate")


def _finite_number(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        _bad(name, value, "must be a finite number")
