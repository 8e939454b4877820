"""What the pinning context is told by the composition root: quotas, limits, the pin deadline, target bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

from pinner.replication.model import Target


@dataclass(frozen=True)
class PinningConfig:
    max_pins: int = 10_000  # live pins per publisher (409 beyond)
    max_bytes: int = 1 << 40  # bytes of pinned content per publisher (409 beyond)
    pin_timeout_s: float = 3600.0  # a pin not pinned this long after it was requested is failed
    target: Target = field(default_factory=lambda: Target(2, 3))  # without meta replication_min/max
    max_replication: int = 5  # meta replication_max is capped here
    name_max: int = 255
    origins_max: int = 20
    meta_max_chars: int = 1000  # the meta object's JSON text
    cid_filter_max: int = 10
    limit_max: int = 1000
    limit_default: int = 10
    delegates_max: int = 20
    delegates_ttl_s: float = 30.0  # node addresses are asked for at most this often
