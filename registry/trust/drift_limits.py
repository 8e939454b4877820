"""A namespace policy's ``max_drift``: how far a new pack's behavioural fingerprint may move from the curated one.

``{"min_top1_agreement": 0.9, "max_mean_kl": 0.5}`` (either may be left out; an empty object or None means no
limit). Stored on the namespace with its trust policy; the curation rule (registry/gate/drift.py) applies it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from model_core.errors import bounded
from registry.trust.errors import TrustError

MAX_MEAN_KL_LIMIT = 100.0  # nats; anything larger would let any model through anyway
FIELDS = ("min_top1_agreement", "max_mean_kl")


class InvalidDriftPolicy(TrustError):
    """The max_drift policy is not valid."""

    code: ClassVar[str] = "invalid_policy"
    http_status: ClassVar[int] = 422


@dataclass(frozen=True, slots=True)
class DriftLimits:
    min_top1_agreement: float | None = None  # in [0, 1]
    max_mean_kl: float | None = None  # nats, in [0, MAX_MEAN_KL_LIMIT]

    def to_dict(self) -> dict[str, float]:
        out = {"min_top1_agreement": self.min_top1_agreement, "max_mean_kl": self.max_mean_kl}
        return {k: v for k, v in out.items() if v is not None}

    def describe(self) -> str:
        parts = []
        if self.min_top1_agreement is not None:
            parts.append(f"top-1 agreement >= {self.min_top1_agreement:g}")
        if self.max_mean_kl is not None:
            parts.append(f"mean KL <= {self.max_mean_kl:g}")
        return ", ".join(parts) or "no limit"


def _number(data: Mapping[str, Any], name: str, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidDriftPolicy(
            f"max_drift.{name} must be a number, got {bounded(value, 32)}", field=f"max_drift.{name}"
        )
    if not 0.0 <= value <= high:
        raise InvalidDriftPolicy(
            f"max_drift.{name} must be from 0 to {high:g}, got {value:g}", field=f"max_drift.{name}"
        )
    return float(value)


def parse_max_drift(data: Mapping[str, Any] | None) -> DriftLimits | None:
    """The limits from their stored or requested JSON; None when there is no limit.

    Raises:
        InvalidDriftPolicy (422): an unknown field, a value that is not a number or is out of its bounds.
    """
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise InvalidDriftPolicy("max_drift must be an object or null", field="max_drift")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidDriftPolicy(
            f"max_drift has no field {bounded(unknown[0], 64)} (known: {', '.join(FIELDS)})",
            field=f"max_drift.{bounded(unknown[0], 64)}",
        )
    limits = DriftLimits(
        _number(data, "min_top1_agreement", 1.0), _number(data, "max_mean_kl", MAX_MEAN_KL_LIMIT)
    )
    return limits if limits.to_dict() else None
