"""Settings of the embedded block store, and the durability helper its modules share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pinner.car import CarLimits
from pinner.unixfs.params import UnixfsParams
from pinner.unixfs.pipeline import PipelineConfig


@dataclass(frozen=True, slots=True)
class FsBlockstoreConfig:
    """Settings of the embedded store.

    ``default_params`` (chunk size, max links per node, CID version, leaf kind) build the DAG of a file
    ingested without explicit ``UnixfsParams``; the default is Kubo's ``ipfs add`` default.
    """

    fsync: bool = True
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    default_params: UnixfsParams = field(default_factory=UnixfsParams)
    ingest_flush_bytes: int = 4 * 1024 * 1024
    car_limits: CarLimits = field(default_factory=CarLimits)

    def __post_init__(self) -> None:
        if self.ingest_flush_bytes < 1:
            raise ValueError(f"ingest_flush_bytes must be positive, got {self.ingest_flush_bytes}")


def fsync_dir(path: Path) -> None:
    """Makes renames inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
