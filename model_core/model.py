"""The decoder-only transformer (the seed's ProductionTransformer-RAGE with its bugs fixed).

State-dict keys are the seed's (``embed.weight``, ``layers.N.attn.q_proj.weight``, ``lm_head.weight``...)
so seed-format packs load; the MLP holds gate and up separately and presents them as the seed's stacked
``w1`` (``model_core.layers.SwiGLU``). Hugging Face Llama packs are mapped onto the same parameters by
``model_core.layouts``. Masks: ``attention_mask`` is a keep-mask (1 = real token) over the current
tokens, or over every cached slot plus the current tokens; causality is offset by the cached length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from model_core.config import ModelConfig
from model_core.errors import ModelCoreError, SequenceTooLong
from model_core.layers import DecoderBlock, KVCache, Linear, RMSNorm, RotaryEmbedding

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


class Transformer(nn.Module):
    """Pre-norm decoder with RMSNorm, RoPE, grouped-query attention, SwiGLU and (optionally) tied embeddings.

    Args:
        cfg: the hyper-parameters.
        device: where the weights live; ``"meta"`` builds shapes only, for a loader that assigns tensors.
        dtype: the weights' dtype (default: ``cfg.dtype`` or float32).
        init_std: standard deviation of the one and only random initialisation.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        dtype = dtype or DTYPES[cfg.dtype or "float32"]
        # Built on meta (shapes only, no initialisation: layers.Linear skips it there), then either
        # materialised and initialised once below, or left for a loader to assign the pack's tensors.
        meta = torch.device("meta")
        # _weight skips Embedding's normal_ init, which on meta would import torch._dynamo (~1 s).
        self.embed = nn.Embedding(
            cfg.vocab_size,
            cfg.d_model,
            _weight=torch.empty(cfg.vocab_size, cfg.d_model, device=meta, dtype=dtype),
        )
        self.layers = nn.ModuleList(
            DecoderBlock(
                cfg.d_model,
                cfg.num_heads,
                cfg.num_kv_heads,
                cfg.dim_ff,
                cfg.dropout,
                cfg.rmsnorm_eps,
                head_dim=cfg.head_dim,
                device=meta,
                dtype=dtype,
            )
            for _ in range(cfg.num_layers)
        )
        self.final_norm = (
            RMSNorm(cfg.d_model, cfg.rmsnorm_eps, device=meta, dtype=dtype) if cfg.final_norm else None
        )
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, device=meta, dtype=dtype)
        # The RoPE tables are built on the first forward, for the lengths it needs.
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta, cfg.rope_scaling)
        self.set_attention_backend("sdpa" if cfg.use_sdpa else "manual")
        if str(device) != "meta":
            self.to_empty(device=device)
            self.tie_weights()
            self.init_weights(init_std)
        else:
            self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding with the output head (again: ``to_empty`` and ``assign=True`` untie them)."""
        if self.cfg.tie_weights:
            self.lm_head.weight = self.embed.weight

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Initialise every parameter exactly once; residual outputs are scaled down by depth."""
        residual_std = std / math.sqrt(2 * self.cfg.num_layers)
        seen: set[int] = set()
        for name, p in self.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            if p.dim() == 1:
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "mlp.w2.weight")):
                nn.init.normal_(p, 0.0, residual_std)
            else:
                nn.init.normal_(p, 0.0, std)

    def set_attention_backend(self, backend: str) -> None:
        """``"sdpa"`` (PyTorch's fused attention) or ``"manual"`` (explicit softmax, for cross-checks)."""
        if backend not in ("sdpa", "manual"):
            raise ModelCoreError(f"unknown attention backend {backend!r}; use 'sdpa' or 'manual'")
        for block in self.layers:
            assert isinstance(block, DecoderBlock)
            block.attn.use_sdpa = backend == "sdpa"

    @property
    def attention_backend(self) -> str:
        first = self.layers[0]
        assert isinstance(first, DecoderBlock)
        return "sdpa" if first.attn.use_sdpa else "manual"

    def new_cache(self, batch_size: int, capacity: int | None = None) -> KVCache:
        """A KV cache for ``capacity`` slots (default max_seq_len), on the model's device and dtype."""
        capacity = capacity or self.cfg.max_seq_len
        if capacity > self.cfg.max_seq_len:
            raise SequenceTooLong(capacity, self.cfg.max_seq_len, what="cache capacity")
        w = self.embed.weight
        return KVCache(
            self.cfg.num_layers,
            batch_size,
            self.cfg.num_kv_heads,
            self.cfg.head_dim,
            capacity,
            device=w.device,
            dtype=w.dtype,
        )

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        cache: KVCache | None = None,
        *,
        last_only: bool = False,
    ) -> Tensor:
        """Logits (B, T, V) for ``input_ids`` (B, T); with ``cache``, the tokens follow the cached ones.

        ``last_only``: logits (B, 1, V) of the last position only (what greedy decoding reads; the
        output head is the model's largest matmul, so a prefill saves T - 1 rows of it).

        ``attention_mask``: keep-mask (1/True = real token) of shape (B, T), or (B, past + T) with a cache.
        Fully masked positions (left padding) produce finite logits that callers should ignore.
        """
        if input_ids.dim() != 2:
            raise ModelCoreError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        bsz, t = input_ids.shape
        past = cache.length if cache is not None else 0
        if past + t > self.cfg.max_seq_len:
            raise SequenceTooLong(past + t, self.cfg.max_seq_len)
        if cache is not None:
            if past + t > cache.capacity:
                raise SequenceTooLong(past + t, cache.capacity, what="cached sequence (cache capacity)")
            if cache.batch_size != bsz:
                raise ModelCoreError(f"cache is for batch size {cache.batch_size}, input has {bsz}")
        new_keep = self._new_keep_mask(attention_mask, bsz, t, past, cache)
        padded = new_keep is not None and not bool(new_keep.all())
        start = cache.next_position if cache is not None else torch.zeros(bsz, dtype=torch.long)
        start = start.to(input_ids.device)
        if new_keep is None:
            positions = start[:, None] + torch.arange(t, device=input_ids.device)[None, :]
        else:
            positions = (start[:, None] + new_keep.long().cumsum(dim=1) - 1).clamp(min=0)
        rope = self.rope(positions)

        mask: Tensor | None = None
        if padded or (cache is not None and cache.has_padding) or (past > 0 and t > 1):
            keep_new = new_keep if new_keep is not None else torch.ones(bsz, t, dtype=torch.bool)
            keep_new = keep_new.to(input_ids.device)
            keys = keep_new if cache is None else torch.cat([cache.key_mask[:, :past], keep_new], dim=1)
            causal = torch.ones(t, past + t, dtype=torch.bool, device=input_ids.device).tril(diagonal=past)
            mask = causal[None, None] & keys[:, None, None, :]
        # else: no mask; with nothing cached SDPA applies causality itself, and one new unpadded token
        # may see every cached key.

        if cache is not None:
            keep = new_keep if new_keep is not None else torch.ones(bsz, t, dtype=torch.bool)
            cache.key_mask[:, past : past + t] = keep.to(cache.key_mask.device)
            cache.has_padding = cache.has_padding or padded

        x = self.embed(input_ids)
        for i, block in enumerate(self.layers):
            x = block(x, rope, mask, cache, i)
        if cache is not None:
            cache.length = past + t
            if new_keep is None:
                cache.next_position += t
            else:
                cache.next_position += new_keep.long().sum(dim=1).to(cache.next_position.device)
        if last_only:
            x = x[:, -1:]
        if self.final_norm is not None:
            x = self.final_norm(x)
        return self.lm_head(x)

    def _new_keep_mask(
        self, attention_mask: Tensor | None, bsz: int, t: int, past: int, cache: KVCache | None
    ) -> Tensor | None:
        if attention_mask is None:
            return None
        if attention_mask.dim() != 2 or attention_mask.size(0) != bsz:
            raise ModelCoreError(
                f"attention_mask must be (batch, length), got shape {tuple(attention_mask.shape)}"
            )
        keep = attention_mask.bool()
        n = keep.size(1)
        if n == t:
            return keep
        if cache is not None and n == past + t:
            return keep[:, past:]  # the cached part was recorded when those tokens went in
        raise ModelCoreError(
            f"attention_mask has {n} columns; expected {t} (the new tokens) or {past + t} (cached + new)"
        )
