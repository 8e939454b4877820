"""The transformer's building blocks: RMSNorm, RoPE, grouped-query attention over a static KV cache, SwiGLU.

Attention never copies the cache: K/V heads are shared through SDPA's ``enable_gqa`` (or a broadcast
view on the manual path), and the cache is preallocated and written in place, so decoding is linear.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model_core.config import RopeScaling

Device = torch.device | str | None
# Rows (batch x positions) for which Linear computes ``weight @ x.T``: see Linear.forward.
SMALL_BATCH_ROWS = (2, 4)


class Linear(nn.Linear):
    """``nn.Linear`` without a bias whose weights are left alone on the meta device.

    nn.Linear initialises itself on construction; on meta that is pure overhead (a loader assigns the
    pack's tensors, ``Transformer.init_weights`` initialises real weights), about 1 ms per layer.
    """

    def __init__(
        self, in_features: int, out_features: int, *, device: Device = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(in_features, out_features, bias=False, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if (
            SMALL_BATCH_ROWS[0] <= rows <= SMALL_BATCH_ROWS[1]
            and x.dtype == torch.float32
            and x.device.type == "cpu"
        ):
            # ``weight @ x.T``: the same dot products, which MKL's float32 GEMM computes 2-3x faster than
            # ``x @ weight.T`` for 2-4 rows (batched decoding steps), where it was slower than one GEMV per
            # row; bench/README.md, "small-batch matmuls". Other shapes and dtypes keep F.linear.
            flat = x.reshape(rows, x.shape[-1])
            return (self.weight @ flat.T).T.reshape(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight)


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 so fp16/bf16 activations cannot overflow to zero."""

    def __init__(
        self, d_model: int, eps: float = 1e-5, *, device: Device = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight


class RotaryEmbedding(nn.Module):
    """RoPE tables for positions up to max_seq_len, looked up per row (left padding shifts positions).

    The tables are built on first use, for the positions actually used (at least ``MIN_POSITIONS``),
    and doubled when a longer sequence comes: a model's construction computes none of them.
    """

    cos_cached: Tensor
    sin_cached: Tensor
    INITIAL_POSITIONS = 4096
    MIN_POSITIONS = 256

    def __init__(
        self, head_dim: int, max_seq_len: int, theta: float = 10000.0, scaling: RopeScaling | None = None
    ) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.theta = theta
        self.scaling = scaling
        self.register_buffer("cos_cached", torch.empty(0), persistent=False)
        self.register_buffer("sin_cached", torch.empty(0), persistent=False)

    def build(self, device: torch.device | str, length: int | None = None) -> None:
        """(Re)compute the tables on ``device`` for ``length`` positions (default: a small first block).

        Tables grow on demand up to max_seq_len, so a config claiming a huge context costs nothing
        until a sequence that long actually runs.
        """
        length = min(self.max_seq_len, length or self.INITIAL_POSITIONS)
        # Normal tensors even when first used under inference_mode, so the model can still be trained.
        with torch.inference_mode(False), torch.no_grad():
            inv_freq = rope_inv_freq(self.head_dim, self.theta, self.scaling, device)
            t = torch.arange(length, device=device, dtype=torch.float64)
            freqs = torch.outer(t, inv_freq)
            emb = torch.cat([freqs, freqs], dim=-1)
            self.cos_cached = emb.cos().float()
            self.sin_cached = emb.sin().float()

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Returns cos, sin of shape (B, 1, T, head_dim) for integer positions of shape (B, T)."""
        needed = int(positions.max()) + 1 if positions.numel() else 1
        table = self.cos_cached
        if table.is_meta or table.device != positions.device or table.size(0) < needed:
            rows = 0 if table.is_meta else table.size(0)
            self.build(positions.device, max(needed, 2 * rows, self.MIN_POSITIONS))
        return self.cos_cached[positions].unsqueeze(1), self.sin_cached[positions].unsqueeze(1)


def rope_inv_freq(
    head_dim: int, theta: float, scaling: RopeScaling | None, device: torch.device | str
) -> Tensor:
    """RoPE's inverse frequencies (float64), scaled as Hugging Face's ``linear`` and ``llama3`` rope types."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim))
    if scaling is None:
        return inv_freq
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    # llama3: wavelengths longer than original/low_freq_factor are slowed by factor, shorter than
    # original/high_freq_factor kept, and those between blended linearly in original/wavelength.
    original = scaling.original_max_position_embeddings
    wavelen = 2 * math.pi / inv_freq
    smooth = (original / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    low = wavelen > original / scaling.low_freq_factor
    high = wavelen < original / scaling.high_freq_factor
    return torch.where(low, inv_freq / scaling.factor, torch.where(high, inv_freq, blended))


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return ((x.float() * cos) + (rotated.float() * sin)).to(x.dtype)


class SwiGLU(nn.Module):
    """Gated MLP ``w2(silu(gate_proj(x)) * up_proj(x))``; gate and up are separate weights.

    The state dict keeps the seed's layout: ``w1`` is gate and up stacked (gate first). Loading a ``w1``
    splits it into two row-block views of the same storage (no copy); saving stacks them (a copy).
    """

    def __init__(
        self, d_model: int, dim_ff: int, *, device: Device = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.gate_proj = Linear(d_model, dim_ff, device=device, dtype=dtype)
        self.up_proj = Linear(d_model, dim_ff, device=device, dtype=dtype)
        self.w2 = Linear(dim_ff, d_model, device=device, dtype=dtype)
        self.register_state_dict_post_hook(_stack_w1)
        self.register_load_state_dict_pre_hook(_split_w1)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.gate_proj(x)) * self.up_proj(x))


def split_packed_w1(w1: Tensor) -> tuple[Tensor, Tensor]:
    """The seed's packed ``w1`` (2*dim_ff, d_model) as (gate, up) views of its storage."""
    gate, up = w1.chunk(2, dim=0)
    return gate, up


def _stack_w1(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    gate = state.pop(prefix + "gate_proj.weight")
    up = state.pop(prefix + "up_proj.weight")
    w2 = state.pop(prefix + "w2.weight")  # re-inserted after w1: the seed's key order
    state[prefix + "w1.weight"] = torch.cat([gate, up], dim=0)
    state[prefix + "w2.weight"] = w2


def _split_w1(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    w1 = state.pop(prefix + "w1.weight", None)
    if w1 is None:
        return
    if w1.dim() != 2 or w1.size(0) % 2:
        state[prefix + "w1.weight"] = w1  # reported as unexpected by load_state_dict
        return
    state[prefix + "gate_proj.weight"], state[prefix + "up_proj.weight"] = split_packed_w1(w1)


class KVCache:
    """Preallocated keys/values for all layers, which slots hold real tokens, each row's next position.

    Slots are filled left to right; ``length`` is the number used. Nothing is reallocated while decoding.
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        head_dim: int,
        capacity: int,
        *,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        shape = (num_layers, batch_size, num_kv_heads, capacity, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.key_mask = torch.zeros(batch_size, capacity, device=device, dtype=torch.bool)
        self.next_position = torch.zeros(batch_size, device=device, dtype=torch.long)
        self.length = 0
        self.has_padding = False

    @property
    def capacity(self) -> int:
        return self.k.size(3)

    @property
    def batch_size(self) -> int:
        return self.k.size(1)


class GQASelfAttention(nn.Module):
    """Grouped-query attention: ``num_heads`` query heads share ``num_kv_heads`` key/value heads."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int,
        dropout: float,
        *,
        head_dim: int | None = None,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim or d_model // num_heads
        self.dropout = dropout
        self.use_sdpa = True
        self.q_proj = Linear(d_model, num_heads * self.head_dim, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, num_kv_heads * self.head_dim, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, num_kv_heads * self.head_dim, device=device, dtype=dtype)
        self.o_proj = Linear(num_heads * self.head_dim, d_model, device=device, dtype=dtype)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        mask: Tensor | None,
        cache: KVCache | None,
        layer: int,
    ) -> Tensor:
        """Attend ``x`` (B, T, D) to the cached keys plus its own.

        ``mask`` is a bool allow-mask (B, 1, T, S) (fully masked rows give zeros), or None meaning
        "causal, nothing padded" (only valid when nothing is cached before ``x``).
        """
        bsz, t, _ = x.shape
        q = self.q_proj(x).view(bsz, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(bsz, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(bsz, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            past = cache.length
            cache.k[layer, :, :, past : past + t] = k
            cache.v[layer, :, :, past : past + t] = v
            k = cache.k[layer, :, :, : past + t]
            v = cache.v[layer, :, :, : past + t]
        dropout_p = self.dropout if self.training else 0.0
        dead: Tensor | None = None
        if mask is not None:
            # A query with nothing to attend to (a pad before any real token) would give NaN on every
            # backend: let it see everything, then zero its output.
            dead = ~mask.any(dim=-1, keepdim=True)
            mask = mask | dead
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout_p,
                is_causal=mask is None and t > 1,
                enable_gqa=True,
            )
        else:
            out = self._manual(q, k, v, mask, dropout_p)
        if dead is not None:
            out = out.masked_fill(dead, 0.0)
        out = out.transpose(1, 2).reshape(bsz, t, self.num_heads * self.head_dim)
        return self.o_proj(out)

    def _manual(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float) -> Tensor:
        bsz, _, t, d = q.shape
        s = k.size(2)
        rep = self.num_heads // self.num_kv_heads
        qg = q.reshape(bsz, self.num_kv_heads, rep, t, d)
        # (B, Hkv, rep, T, S): K/V broadcast over the group, never repeated in memory.
        scores = torch.matmul(qg.float(), k.unsqueeze(2).transpose(-2, -1).float()) / math.sqrt(d)
        if mask is None and t > 1:
            mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)[None, None]
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(2), float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        attn = F.dropout(attn, p=dropout_p, training=dropout_p > 0)
        out = torch.matmul(attn.to(v.dtype), v.unsqueeze(2))
        return out.reshape(bsz, self.num_heads, t, d)


class DecoderBlock(nn.Module):
    """Pre-norm block: x + Attn(RMSNorm(x)), then x + MLP(RMSNorm(x))."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int,
        dim_ff: int,
        dropout: float,
        eps: float,
        *,
        head_dim: int | None = None,
        device: Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model, eps, device=device, dtype=dtype)
        self.attn = GQASelfAttention(
            d_model, num_heads, num_kv_heads, dropout, head_dim=head_dim, device=device, dtype=dtype
        )
        self.norm2 = RMSNorm(d_model, eps, device=device, dtype=dtype)
        self.mlp = SwiGLU(d_model, dim_ff, device=device, dtype=dtype)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None, cache: KVCache | None, layer: int
    ) -> Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), rope, mask, cache, layer))
        return x + self.dropout(self.mlp(self.norm2(x)))
