"""Greedy decoding over the static KV cache: per-row EOS, one forward per new token, mode restored."""

from __future__ import annotations

import torch
from torch import Tensor

from model_core.errors import ModelCoreError, SequenceTooLong
from model_core.model import Transformer


@torch.no_grad()
def greedy_generate(
    model: Transformer,
    prompt_ids: Tensor,
    max_new_tokens: int = 64,
    *,
    eos_token_id: int | None = None,
    attention_mask: Tensor | None = None,
    pad_token_id: int | None = None,
) -> Tensor:
    """Append up to ``max_new_tokens`` argmax tokens to each (left-padded) prompt row.

    A row stops at its own EOS; later positions of a stopped row hold ``pad_token_id`` (default: the
    EOS id). The output has ``prompt_len + n`` columns, where n is the step at which the last row
    stopped (at most ``max_new_tokens``). The length is checked before any work; the model's
    train/eval mode is restored afterwards.

    Raises:
        SequenceTooLong: when prompt length plus max_new_tokens exceeds max_seq_len.
    """
    if prompt_ids.dim() != 2 or prompt_ids.size(1) == 0:
        raise ModelCoreError(f"prompt_ids must be (batch, length>0), got shape {tuple(prompt_ids.shape)}")
    if max_new_tokens < 0:
        raise ModelCoreError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    bsz, prompt_len = prompt_ids.shape
    total = prompt_len + max_new_tokens
    if total > model.cfg.max_seq_len:
        raise SequenceTooLong(total, model.cfg.max_seq_len, what="prompt length plus max_new_tokens")
    if max_new_tokens == 0:
        return prompt_ids.clone()
    fill = pad_token_id if pad_token_id is not None else eos_token_id
    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache(bsz, capacity=total)
        logits = model(prompt_ids, attention_mask=attention_mask, cache=cache, last_only=True)
        done = torch.zeros(bsz, dtype=torch.bool, device=prompt_ids.device)
        out = torch.empty(bsz, max_new_tokens, dtype=prompt_ids.dtype, device=prompt_ids.device)
        steps = 0
        for step in range(max_new_tokens):
            next_id = logits[:, -1, :].argmax(dim=-1)
            if fill is not None:
                next_id = torch.where(done, torch.full_like(next_id, fill), next_id)
            out[:, step] = next_id
            steps = step + 1
            if eos_token_id is not None:
                done |= next_id == eos_token_id
                if bool(done.all()):
                    break
            if steps == max_new_tokens:
                break  # no forward for a token nobody will read
            logits = model(next_id[:, None], cache=cache)
        return torch.cat([prompt_ids, out[:, :steps]], dim=1)
    finally:
        model.train(was_training)
