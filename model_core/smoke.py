"""The smoke-test suite the gate runs on a loaded pack, producing a JSON-ready report.

Each check states a property a user of the model would notice if it broke (finite logits, cached decoding
equal to a full forward, padding that does not leak, per-row EOS...). Sizes scale down for big models and
the whole suite has a time budget; checks past the budget are reported as skipped.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import safetensors
import torch
from torch import Tensor

from model_core.errors import SequenceTooLong
from model_core.generate import greedy_generate, greedy_steps
from model_core.model import Transformer


@dataclass(frozen=True)
class SmokeConfig:
    time_budget_s: float = 300.0
    seed: int = 1234
    batch_size: int = 2
    seq_len: int = 24
    short_seq_len: int = 8  # for models above big_model_params
    big_model_params: int = 100_000_000
    big_model_decode_steps: int = 3
    gen_tokens: int = 6
    fp32_tolerance: float = 1e-4  # max |difference|, relative to the largest |logit| (at least 1)
    # fp16/bf16: the relative L2 error of the whole logits tensor. One rounding per op in 10-11 bits
    # compounds over depth, and large activations (a real checkpoint's outliers) make single logits
    # differ by several percent between equivalent paths; a wrong cache, mask or position is O(0.1..1).
    half_tolerance: float = 5e-2
    # fp16/bf16 greedy decoding: a batched and a per-row run may part on a near-tie (margin between the
    # two picks' logits within this fraction of the largest |logit|); fp32 runs must agree exactly.
    tie_tolerance: float = 5e-2
    single_thread_below_params: int = 20_000_000


class _Fail(Exception):
    pass


@dataclass(frozen=True)
class _PaddedRun:
    ids: Tensor  # (B, t), rows after the first left-padded
    mask: Tensor  # (B, t) keep-mask
    eos: int | None  # the EOS id the run stopped rows at (None: a free run)
    logits: Tensor  # (B, t + n - 1, V): the batched prefill, then each decode step
    tokens: Tensor  # (B, n): the tokens the batch generated (EOS fill after a row's EOS), n <= gen
    per_row: list[Tensor]  # row r alone, unpadded: (real tokens + n - 1, V)


def _close(name: str, got: Tensor, want: Tensor, tol: float, half: bool = False) -> str:
    got, want = got.float(), want.float()
    if half:
        err = float((got - want).norm() / want.norm().clamp_min(1e-30))
        if not err <= tol:
            raise _Fail(f"{name}: relative L2 difference {err:.3g} exceeds {tol:g}")
        return f"relative L2 difference {err:.3g} (limit {tol:g})"
    scale = max(1.0, float(want.abs().max()))
    err = float((got - want).abs().max())
    if not err <= tol * scale:
        raise _Fail(f"{name}: max |difference| {err:.3g} exceeds {tol:g} x {scale:.3g}")
    return f"max |difference| {err:.3g} (limit {tol * scale:.3g})"


class SmokeSuite:
    """Runs the checks on one model; ``run()`` returns the report dict."""

    def __init__(self, model: Transformer, config: SmokeConfig = SmokeConfig()) -> None:
        self.model = model.eval()
        self.cfg = model.cfg
        self.config = config
        self.params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        big = self.params > config.big_model_params
        seq = config.short_seq_len if big else config.seq_len
        gen_tokens = config.big_model_decode_steps if big else config.gen_tokens
        self.gen = max(1, min(gen_tokens, self.cfg.max_seq_len // 4))
        self.t = max(2, min(seq, self.cfg.max_seq_len - self.gen))
        # Every decode step of a big model reads all its weights: step through only the last few tokens.
        self.decode_steps = min(self.t, config.big_model_decode_steps) if big else self.t
        self.pad = min(3, self.t // 2)
        dtype = model.embed.weight.dtype
        self.half = dtype != torch.float32
        self.tol = config.half_tolerance if self.half else config.fp32_tolerance
        gen = torch.Generator().manual_seed(config.seed)
        self.ids = torch.randint(0, self.cfg.vocab_size, (config.batch_size, self.t), generator=gen)
        self.logits_digest = ""
        self._cached: tuple[list[Tensor], list[Tensor]] | None = None
        self._greedy: _PaddedRun | None = None

    def run(self) -> dict[str, Any]:
        checks: list[tuple[str, Callable[[], str]]] = [
            ("parameter_count", self.check_parameter_count),
            ("weights_finite_and_not_degenerate", self.check_weights),
            ("logits_shape_finite_not_degenerate", self.check_logits),
            ("deterministic", self.check_deterministic),
            ("cached_decoding_matches_full", self.check_cached_decoding),
            ("chunked_prefill_matches_full", self.check_chunked_prefill),
            ("sdpa_matches_manual_attention", self.check_sdpa_vs_manual),
            ("left_padding_matches_per_row", self.check_left_padding),
            ("batched_generation_matches_per_row", self.check_generation),
            ("max_seq_len_enforced", self.check_max_seq_len),
        ]
        threads = torch.get_num_threads()
        if self.params < self.config.single_thread_below_params:
            # Tiny matmuls gain nothing from a second thread, and on a busy machine OpenMP's
            # spin-waiting makes them ~40x slower.
            torch.set_num_threads(1)
        try:
            return self._run(checks)
        finally:
            torch.set_num_threads(threads)

    def _run(self, checks: list[tuple[str, Callable[[], str]]]) -> dict[str, Any]:
        start = time.perf_counter()
        results = []
        exhausted = False
        for name, fn in checks:
            if time.perf_counter() - start > self.config.time_budget_s:
                exhausted = True
                results.append(
                    {
                        "name": name,
                        "passed": False,
                        "skipped": True,
                        "seconds": 0.0,
                        "reason": f"skipped: the {self.config.time_budget_s:g}s time budget was spent",
                    }
                )
                continue
            t0 = time.perf_counter()
            try:
                with torch.inference_mode():
                    reason, passed = fn(), True
            except _Fail as e:
                reason, passed = str(e), False
            except MemoryError:
                raise
            except Exception as e:  # a check that crashes is a failed check, with the error as its reason
                if "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
                    raise MemoryError(str(e)) from None
                reason, passed = f"{type(e).__name__}: {e}", False
            results.append(
                {
                    "name": name,
                    "passed": passed,
                    "reason": reason,
                    "seconds": round(time.perf_counter() - t0, 4),
                }
            )
        return {
            "passed": all(r["passed"] for r in results),
            "budget_exhausted": exhausted,
            "time_budget_s": self.config.time_budget_s,
            "total_s": round(time.perf_counter() - start, 4),
            "versions": {
                "torch": torch.__version__,
                "safetensors": safetensors.__version__,
                "python": platform.python_version(),
            },
            "attention_backend": "sdpa(enable_gqa)" if self.model.attention_backend == "sdpa" else "manual",
            "threads": torch.get_num_threads(),
            "dtype": str(self.model.embed.weight.dtype).removeprefix("torch."),
            "parameters": self.params,
            "batch_size": self.config.batch_size,
            "seq_len": self.t,
            "logits_digest": self.logits_digest,
            "checks": results,
        }

    # -- checks -----------------------------------------------------------------------------------

    def check_parameter_count(self) -> str:
        want = self.cfg.parameter_count()
        if self.params != want:
            raise _Fail(f"{self.params} parameters, but the config's closed form gives {want}")
        return f"{self.params} parameters"

    def check_weights(self) -> str:
        seen: set[int] = set()
        for name, p in self.model.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            low, high = (
                float(v) for v in torch.aminmax(p.detach().float() if p.dtype != torch.float32 else p)
            )
            if not (math.isfinite(low) and math.isfinite(high)):  # NaN propagates through min/max
                bad = int((~torch.isfinite(p)).sum())
                raise _Fail(f"tensor {name!r} has {bad} non-finite (NaN or Inf) values")
            if p.dim() >= 2 and low == high:
                raise _Fail(
                    f"tensor {name!r} is all zeros" if low == 0 else f"tensor {name!r} is constant ({low:g})"
                )
        return f"{len(seen)} tensors finite; no matrix is all-zero or constant"

    def check_logits(self) -> str:
        logits = self.model(self.ids)
        b, t, v = self.config.batch_size, self.t, self.cfg.vocab_size
        if tuple(logits.shape) != (b, t, v):
            raise _Fail(f"logits have shape {tuple(logits.shape)}, expected {(b, t, v)}")
        if not bool(torch.isfinite(logits).all()):
            raise _Fail(f"{int((~torch.isfinite(logits)).sum())} logits are NaN or Inf")
        f = logits.float()
        if float(f.std(dim=-1).min()) == 0.0:
            raise _Fail("some position has the same logit for every token")
        if float((f - f[:, :1]).abs().max()) == 0.0:
            raise _Fail("every position has identical logits (the input is ignored)")
        self.logits_digest = "sha256:" + hashlib.sha256(f.contiguous().numpy().tobytes()).hexdigest()
        self._full = logits
        return f"shape {(b, t, v)}, finite, std {float(f.std()):.3g}"

    def _close(self, name: str, got: Tensor, want: Tensor) -> str:
        return _close(name, got, want, self.tol, self.half)

    def _reference(self) -> Tensor:
        full = getattr(self, "_full", None)
        return full if full is not None else self.model(self.ids)

    def check_deterministic(self) -> str:
        a, b = self._reference(), self.model(self.ids)
        if not torch.equal(a, b):
            raise _Fail(f"two runs on the same input differ by up to {float((a - b).abs().max()):.3g}")
        return "identical logits on a second run"

    # Forwards over the whole model dominate the suite's time (a big model's decode step reads every weight),
    # so the checks share runs: one cached run serves cached decoding and chunked prefill, one batched, left-
    # padded greedy run (with per-row references) left padding, batched generation and the SDPA check's SDPA.

    def _cached_run(self) -> tuple[list[Tensor], list[Tensor]]:
        """One run over a cache: the first ``t - decode_steps`` tokens in up to two chunks (the second onto a
        non-empty cache), then the rest one token at a time. Returns (chunk logits, single-step logits)."""
        if self._cached is None:
            cache = self.model.new_cache(self.config.batch_size, self.t)
            first = self.t - self.decode_steps
            cuts = [0, first // 2, first] if first >= 2 else [0, first]
            chunks = [self.model(self.ids[:, a:b], cache=cache) for a, b in itertools.pairwise(cuts) if a < b]
            steps = [self.model(self.ids[:, i : i + 1], cache=cache) for i in range(first, self.t)]
            self._cached = (chunks, steps)
        return self._cached

    def check_cached_decoding(self) -> str:
        _, steps = self._cached_run()
        first = self.t - self.decode_steps
        return self._close(
            "step-by-step cached decoding vs full forward", torch.cat(steps, 1), self._reference()[:, first:]
        )

    def check_chunked_prefill(self) -> str:
        chunks, _ = self._cached_run()
        first = self.t - self.decode_steps
        if len(chunks) < 2:  # that run had no chunk onto a non-empty cache: a run of chunks of its own
            cache = self.model.new_cache(self.config.batch_size, self.t)
            first = self.t
            cuts = [0, self.t // 3, 2 * self.t // 3 + 1, self.t]
            chunks = [self.model(self.ids[:, a:b], cache=cache) for a, b in itertools.pairwise(cuts) if a < b]
        return self._close(
            "chunked prefill vs full forward", torch.cat(chunks, 1), self._reference()[:, :first]
        )

    def _padded(self) -> tuple[Tensor, Tensor]:
        ids = self.ids.clone()
        mask = torch.ones_like(ids)
        mask[1:, : self.pad] = 0  # rows after the first are left-padded
        ids[mask == 0] = 0
        return ids, mask

    def check_sdpa_vs_manual(self) -> str:
        ids, mask = self._padded()
        before = self.model.attention_backend
        try:
            if before == "sdpa":  # the padded greedy run's prefill ran on SDPA
                a = self._padded_greedy().logits[:, : self.t]
            else:
                self.model.set_attention_backend("sdpa")
                a = self.model(ids, attention_mask=mask)
            self.model.set_attention_backend("manual")
            b = self.model(ids, attention_mask=mask)
        finally:
            self.model.set_attention_backend(before)
        real = mask.bool()
        return self._close("SDPA vs manual attention on real tokens", a[real], b[real])

    def _padded_greedy(self) -> _PaddedRun:
        """The left-padded rows generated together (``greedy_steps``, as ``greedy_generate`` runs: prefill,
        then one cached step per token, per-row EOS); and each row alone, unpadded, in one uncached forward
        over its prompt and the tokens the batch fed it (the same logits its own prefill + cached decoding
        give: cached_decoding_matches_full checks that), one forward per row instead of 1 + steps.

        Row 0 is the unpadded ``ids[0]``: its first greedy token, from the reference forward, is the EOS
        id, so row 0 stops at once and the others decode on beside its EOS fill. Should that stop every
        row before any decode step, the run is repeated without EOS."""
        if self._greedy is None:
            ids, mask = self._padded()
            eos: int | None = int(self._reference()[0, -1].argmax())
            while True:
                steps = list(
                    greedy_steps(
                        self.model, ids, self.gen, eos_token_id=eos, attention_mask=mask, prompt_logits=True
                    )
                )
                if eos is None or len(steps) >= min(2, self.gen):
                    break
                eos = None
            tokens = torch.stack([t for _, t in steps], dim=1)
            rows = [torch.cat([ids[r, mask[r].bool()], tokens[r, :-1]])[None] for r in range(ids.size(0))]
            per_row = [self.model(x)[0] for x in rows]
            logits = torch.cat([lg for lg, _ in steps], 1)
            self._greedy = _PaddedRun(ids, mask, eos, logits, tokens, per_row)
        return self._greedy

    def check_left_padding(self) -> str:
        run = self._padded_greedy()
        worst = ""
        for r, want in enumerate(run.per_row):
            keep = torch.cat([run.mask[r].bool(), torch.ones(run.tokens.size(1) - 1, dtype=torch.bool)])
            worst = self._close(
                f"row {r} (left padding, prefill and cached decoding)", run.logits[r, keep], want
            )
        return worst

    def check_generation(self) -> str:
        run = self._padded_greedy()
        n, ties, lengths, stopped = run.tokens.size(1), [], [], 0
        for r, want in enumerate(run.per_row):
            row = run.tokens[r]
            hits = (row == run.eos).nonzero().flatten().tolist() if run.eos is not None else []
            live = hits[0] + 1 if hits else n  # the row's own tokens: up to and with its first EOS
            stopped += bool(hits)
            lengths.append(live)
            # the logits each of them was picked from, as the row alone gives them
            picks = want[-n:][:live].argmax(dim=-1)
            for at in (picks != row[:live]).nonzero().flatten().tolist():
                margin = self._near_tie(want[-n + at], int(picks[at]), int(row[at]))
                if margin is None:
                    raise _Fail(
                        f"row {r}: batched generation {row.tolist()} differs from per-row greedy decoding "
                        f"at step {at} (the row alone picks {int(picks[at])})"
                    )
                ties.append(f"row {r} parts at step {at} on a near-tie (logit margin {margin:.3g})")
            if run.eos is not None and not bool((row[live:] == run.eos).all()):
                raise _Fail(f"row {r}: tokens after EOS are {row[live:].tolist()}, not EOS padding")
        if n < self.gen and (stopped < len(lengths) or max(lengths) != n):  # it ends when the last row stops
            raise _Fail(f"generation ended after {n} of {self.gen} steps; the rows' own tokens: {lengths}")
        note = f"; {'; '.join(ties)}" if ties else ""
        eos = (
            "no EOS (it would have stopped every row at once)"
            if run.eos is None
            else f"per-row EOS={run.eos}"
        )
        return f"{eos}; generated lengths {lengths}{note}"

    def _near_tie(self, logits: Tensor, best: int, other: int) -> float | None:
        """In half precision, batched and per-row rounding may pick different tokens where two logits
        are (almost) equal: the margin ``logits[best] - logits[other]`` when it is within the tolerance,
        None when it is a real difference (always, in fp32)."""
        if not self.half:
            return None
        logits = logits.float()
        margin = float(logits[best] - logits[other])
        limit = self.config.tie_tolerance * max(1.0, float(logits.abs().max()))
        return margin if margin <= limit else None

    def check_max_seq_len(self) -> str:
        n = self.cfg.max_seq_len
        calls = []
        hook = self.model.register_forward_pre_hook(lambda *_: calls.append(1))
        try:
            for what, run in (
                ("forward", lambda: self.model(torch.zeros(1, n + 1, dtype=torch.long))),
                ("greedy_generate", lambda: greedy_generate(self.model, self.ids[:1, :1], n)),
            ):
                try:
                    run()
                except SequenceTooLong as e:
                    if str(n) not in str(e) or str(n + 1) not in str(e):
                        raise _Fail(f"{what}: the error does not give the lengths: {e}") from None
                else:
                    raise _Fail(f"{what} accepted {n + 1} positions with max_seq_len={n}")
        finally:
            hook.remove()
        if len(calls) > 1:
            raise _Fail("greedy_generate ran the model before refusing the length")
        return f"{n + 1} positions refused with SequenceTooLong before any work"


def run_smoke(model: Transformer, config: SmokeConfig = SmokeConfig()) -> dict[str, Any]:
    """Run every check on ``model`` and return the report (``report["passed"]`` is the verdict)."""
    return SmokeSuite(model, config).run()
