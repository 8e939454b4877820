"""Behavioural fingerprints: what a model predicts on fixed probe inputs, and how far two models differ.

Every validation records, for PROBE_COUNT probe sequences of token ids derived only from the vocabulary
size (so any pack has them, tokenizer or not), the top-k (k = FINGERPRINT_K) next-token ids and their
log-probabilities at PROBE_POSITIONS positions of each probe: one row per (probe, position).

``compare_fingerprints(reference, candidate)`` gives the top-1 agreement (the share of rows whose most
likely token is the same) and the mean KL divergence KL(reference || candidate) per row. Only the top-k
of each distribution is known, so the KL is computed on the distributions coarse-grained to the buckets
S = top-k(reference) ∪ top-k(candidate), plus one bucket for every other token:

- an id in S that is in a side's own top-k has that side's recorded probability;
- an id in S outside a side's top-k gets that side's tail mass (1 - the sum of its top-k probabilities)
  spread uniformly over the V - k ids outside its top-k, capped at its k-th probability (no id outside
  the top-k can be likelier than the k-th);
- the "rest" bucket holds 1 - the sum over S; every bucket is floored at PROB_FLOOR.

Coarse-graining never increases KL, so with exact tail estimates this is a lower bound of the true KL;
two identical fingerprints give exactly 0. Torch-free: the registry imports it (``max_drift``, ``diff``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model_core.errors import ModelCoreError, bounded
from model_core.format.probes import (
    MAX_ROWS,
    PROB_FLOOR,
    PROBE_POSITIONS,
)


class FingerprintMismatch(ModelCoreError):
    """The two fingerprints cannot be compared (another scheme, vocabulary or probe set)."""

    code = "fingerprint_mismatch"
    http_status = 422


LogProb = Annotated[float, Field(le=0.0, allow_inf_nan=False)]


class Fingerprint(BaseModel):
    """A recorded fingerprint (the ``fingerprint`` object of a validation report)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    scheme: str
    k: int = Field(ge=1, le=64)
    vocab_size: int = Field(ge=1)
    probe_len: int = Field(ge=1)
    positions: list[int] = Field(max_length=PROBE_POSITIONS)
    top_ids: list[list[Annotated[int, Field(ge=0)]]] = Field(min_length=1, max_length=MAX_ROWS)
    top_logprobs: list[list[LogProb]] = Field(min_length=1, max_length=MAX_ROWS)

    @model_validator(mode="after")
    def _shapes(self) -> Fingerprint:
        if len(self.top_ids) != len(self.top_logprobs):
            raise ValueError("top_ids and top_logprobs have different numbers of rows")
        k = min(self.k, self.vocab_size)
        for ids, lps in zip(self.top_ids, self.top_logprobs, strict=True):
            if len(ids) != k or len(lps) != k:
                raise ValueError(f"every row must hold {k} ids and {k} log-probabilities")
            if any(i >= self.vocab_size for i in ids) or len(set(ids)) != k:
                raise ValueError("a row's ids must be distinct and inside the vocabulary")
        return self


def parse_fingerprint(data: Any) -> Fingerprint:
    """A fingerprint from a report's JSON, or FingerprintMismatch saying why it is not one."""
    try:
        return Fingerprint.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(root)"
        msg = bounded(first["msg"].removeprefix("Value error, "))
        raise FingerprintMismatch(f"not a behavioural fingerprint: {loc}: {msg}") from None


@dataclass(frozen=True, slots=True)
class FingerprintDiff:
    """How far a candidate's fingerprint is from a reference's."""

    top1_agreement: float  # share of rows whose top-1 token is the same, in [0, 1]
    mean_kl: float  # mean over rows of KL(reference || candidate), nats, >= 0
    max_kl: float
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1_agreement": round(self.top1_agreement, 6),
            "mean_kl": round(self.mean_kl, 6),
            "max_kl": round(self.max_kl, 6),
            "rows": self.rows,
        }


def _side(ids: list[int], lps: list[float], vocab_size: int) -> tuple[dict[int, float], float]:
    probs = {i: math.exp(lp) for i, lp in zip(ids, lps, strict=True)}
    tail = max(0.0, 1.0 - sum(probs.values()))
    outside = max(1, vocab_size - len(ids))
    return probs, min(tail / outside, min(probs.values()))


def row_kl(ref: tuple[list[int], list[float]], cand: tuple[list[int], list[float]], vocab_size: int) -> float:
    """KL(reference || candidate) of one row on the coarse-grained buckets (see the module docstring)."""
    p, p_other = _side(*ref, vocab_size)
    c, c_other = _side(*cand, vocab_size)
    support = sorted(set(p) | set(c))
    pb = [p.get(i, p_other) for i in support]
    cb = [c.get(i, c_other) for i in support]
    pb.append(1.0 - sum(pb))
    cb.append(1.0 - sum(cb))
    kl = 0.0
    for a, b in zip(pb, cb, strict=True):
        a, b = max(a, PROB_FLOOR), max(b, PROB_FLOOR)
        kl += a * math.log(a / b)
    return max(0.0, kl)


def compare_fingerprints(reference: Any, candidate: Any) -> FingerprintDiff:
    """Top-1 agreement and mean KL of ``candidate`` against ``reference`` (Fingerprint or report JSON).

    Raises:
        FingerprintMismatch: either is not a fingerprint, or they were taken on different probes.
    """
    ref = reference if isinstance(reference, Fingerprint) else parse_fingerprint(reference)
    cand = candidate if isinstance(candidate, Fingerprint) else parse_fingerprint(candidate)
    for name in ("scheme", "k", "vocab_size", "probe_len", "positions"):
        a, b = getattr(ref, name), getattr(cand, name)
        if a != b:
            raise FingerprintMismatch(
                f"the fingerprints differ in {name} ({bounded(a, 64)} vs {bounded(b, 64)}): "
                "they were not taken on the same probes",
            )
    if len(ref.top_ids) != len(cand.top_ids):
        raise FingerprintMismatch(
            f"the fingerprints have {len(ref.top_ids)} and {len(cand.top_ids)} rows; they cannot be compared"
        )
    rows = len(ref.top_ids)
    same = sum(a[0] == b[0] for a, b in zip(ref.top_ids, cand.top_ids, strict=True))
    kls = [
        row_kl((ra, rl), (ca, cl), ref.vocab_size)
        for ra, rl, ca, cl in zip(ref.top_ids, ref.top_logprobs, cand.top_ids, cand.top_logprobs, strict=True)
    ]
    return FingerprintDiff(top1_agreement=same / rows, mean_kl=sum(kls) / rows, max_kl=max(kls), rows=rows)
