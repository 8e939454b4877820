"""Greedy decoding over the static KV cache: per-row EOS, one forward per new token, mode restored."""

from __future__ import annotations

from collections.abc import Iterator

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
    out = [
        tokens
        for _, tokens in greedy_steps(
            model,
            prompt_ids,
            max_new_tokens,
            eos_token_id=eos_token_id,
            attention_mask=attention_mask,
            pad_token_id=pad_token_id,
        )
    ]
    return torch.cat([prompt_ids, torch.stack(out, dim=1)], dim=1) if out else prompt_ids.clone()


def greedy_steps(
    model: Transformer,
    prompt_ids: Tensor,
    max_new_tokens: int = 64,
    *,
    eos_token_id: int | None = None,
    attention_mask: Tensor | None = None,
    pad_token_id: int | None = None,
    prompt_logits: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """``greedy_generate`` one new token at a time: yields ``(logits, tokens)`` per step, ``tokens`` (B,)
    the step's tokens (``pad_token_id``, default the EOS id, for rows already stopped) and ``logits`` the
    model's output they were picked from, (B, 1, V); with ``prompt_logits`` the first step's are every
    prompt position's, (B, prompt_len, V). It ends after the step at which the last row stopped, or after
    ``max_new_tokens``, with no forward for a token nobody reads. The arguments are checked here, before
    any work; the model is in eval mode (and under ``no_grad``) while it runs, its mode restored when the
    iterator ends or is closed.

    Raises:
        SequenceTooLong: when prompt length plus max_new_tokens exceeds max_seq_len.
    """
    if prompt_ids.dim() != 2 or prompt_ids.size(1) == 0:
        raise ModelCoreError(f"prompt_ids must be (batch, length>0), got shape {tuple(prompt_ids.shape)}")
    if max_new_tokens < 0:
        raise ModelCoreError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    total = prompt_ids.size(1) + max_new_tokens
    if total > model.cfg.max_seq_len:
        raise SequenceTooLong(total, model.cfg.max_seq_len, what="prompt length plus max_new_tokens")
    fill = pad_token_id if pad_token_id is not None else eos_token_id
    return _steps(model, prompt_ids, max_new_tokens, eos_token_id, attention_mask, fill, prompt_logits)


@torch.no_grad()  # around each step, not across the yields: the caller's code between steps keeps its mode
def _steps(
    model: Transformer,
    prompt_ids: Tensor,
    max_new_tokens: int,
    eos_token_id: int | None,
    attention_mask: Tensor | None,
    fill: int | None,
    prompt_logits: bool,
) -> Iterator[tuple[Tensor, Tensor]]:
    if max_new_tokens == 0:
        return
    bsz = prompt_ids.size(0)
    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache(bsz, capacity=prompt_ids.size(1) + max_new_tokens)
        logits = model(prompt_ids, attention_mask=attention_mask, cache=cache, last_only=not prompt_logits)
        done = torch.zeros(bsz, dtype=torch.bool, device=prompt_ids.device)
        for step in range(max_new_tokens):
            next_id = logits[:, -1, :].argmax(dim=-1)
            if fill is not None:
                next_id = torch.where(done, torch.full_like(next_id, fill), next_id)
            yield logits, next_id
            if eos_token_id is not None:
                done |= next_id == eos_token_id
                if bool(done.all()):
                    return
            if step + 1 == max_new_tokens:
                return  # no forward for a token nobody will read
            logits = model(next_id[:, None], cache=cache)
    finally:
        model.train(was_training)
