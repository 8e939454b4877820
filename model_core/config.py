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
        if self.d_model % self.num_heads:
            _bad("num_heads", self.num_heads, f"must divide d_model ({self.d_model})")
        if self.num_kv_heads > self.num_heads or self.num_heads % self.num_kv_heads:
            _bad("num_kv_heads", self.num_kv_heads, f"must divide num_heads ({self.num_heads})")
        if self.head_dim % 2:
            _bad("d_model", self.d_model, f"gives an odd head_dim ({self.head_dim}); RoPE needs it even")
        if self.dtype is not None and self.dtype not in FLOAT_DTYPES:
            _bad("dtype", self.dtype, f"must be one of {', '.join(FLOAT_DTYPES)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def parameter_count(self) -> int:
        """The number of distinct parameters, in closed form (tied weights counted once)."""
        d, v, f = self.d_model, self.vocab_size, self.dim_ff
        attn = d * d * 2 + d * self.kv_dim * 2  # q, o and k, v projections
        mlp = d * 2 * f + f * d  # fused gate+up, down
        per_layer = attn + mlp + 2 * d  # two RMSNorm weights
        head = 0 if self.tie_weights else v * d
        return v * d + self.num_layers * per_layer + (d if self.final_norm else 0) + head

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["dtype"] is None:
            del out["dtype"]
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
