"""The gate's budgets and policy as one frozen config (the composition root builds it from settings)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

GiB = 1024**3
# What the validation child needs besides the shard bytes (torch, threads, activations). model_core's
# preflight uses the same figure; the registry may not import model_core.preflight, so it is repeated here.
RUNTIME_OVERHEAD_BYTES = 2 * GiB
GATE_ACTOR = "gate"


@dataclass(frozen=True)
class SandboxBudget:
    """Limits handed to ``python -m model_core.validate``."""

    memory_bytes: int = 8 * GiB
    cpu_seconds: int = 900
    wall_seconds: float = 1200.0
    time_budget_s: float = 300.0
    threads: int | None = None
    runtime_overhead_bytes: int = RUNTIME_OVERHEAD_BYTES
    python: str = sys.executable
    supervisor_grace_s: float = 30.0  # the supervisor itself is killed this long after wall_seconds
    # The registry's own manifest limits, so the sandbox refuses no more and no less than publish did.
    # None: model_core's defaults.
    manifest_max_bytes: int | None = None
    max_shards: int | None = None
    header_max_bytes: int | None = None
    filename_max_len: int | None = None
    sandbox_user: str | None = None  # None: model_core's default (nobody)
    worker_python: str | None = None  # None: model_core picks (the supervisor's, or the host's own)

    def __post_init__(self) -> None:
        if (
            self.memory_bytes <= 0
            or self.cpu_seconds <= 0
            or self.wall_seconds <= 0
            or self.time_budget_s <= 0
            or self.runtime_overhead_bytes < 0
            or (self.threads is not None and self.threads < 1)
        ):
            raise ValueError("sandbox budgets must be positive")

    def memory_needed(self, pack_bytes: int) -> int:
        return pack_bytes + self.runtime_overhead_bytes

    def fits(self, pack_bytes: int) -> bool:
        return self.memory_needed(pack_bytes) <= self.memory_bytes


@dataclass(frozen=True)
class GateConfig:
    budget: SandboxBudget = field(default_factory=SandboxBudget)
    auto_validate: bool = True
    on_degrade: Literal["rollback", "hold"] = "rollback"
    work_dir: Path | None = None  # where pack folders are assembled; None: the system temp dir
    replication_min: int = 2
    replication_max: int = 3
    node_down_grace_s: float = 600.0
    sweep_interval_s: float = 30.0  # re-check curated packs (replicas, revocations) and curatable ones
    sweep_batch: int = 200
    curate_retry_s: float = 5.0  # a validated pack waiting for replicas is looked at again this often
    curate_max_attempts: int = 720  # then the sweep alone keeps trying
    fetch_timeout_s: float = 600.0
    actor: str = GATE_ACTOR
    # timed_out / out_of_memory / crashed are retried (backoff from environment_retry_s, doubling) and
    # reject the pack only after this many in a row.
    max_environment_failures: int = 3
    environment_retry_s: float = 30.0
    # Requested validations one publisher may have queued or running: the one slot is shared fairly.
    max_queued_per_publisher: int = 4

    def __post_init__(self) -> None:
        if self.on_degrade not in ("rollback", "hold"):
            raise ValueError(f"curation.on_degrade must be 'rollback' or 'hold', not {self.on_degrade!r}")
        if self.sweep_interval_s <= 0 or self.curate_retry_s <= 0 or self.sweep_batch < 1:
            raise ValueError("gate intervals and batch sizes must be positive")
        if (
            self.max_environment_failures < 1
            or self.environment_retry_s <= 0
            or self.max_queued_per_publisher < 1
        ):
            raise ValueError("validation.max_environment_failures and the retry delay must be positive")
