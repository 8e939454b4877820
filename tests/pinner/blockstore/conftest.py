from __future__ import annotations

from pathlib import Path

import pytest

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.unixfs import PipelineConfig, UnixfsParams

SMALL = UnixfsParams(chunk_size=1024, max_links=4)


@pytest.fixture
def store(tmp_path: Path) -> FsBlockstore:
    return FsBlockstore(tmp_path / "store", FsBlockstoreConfig(pipeline=PipelineConfig(batch_bytes=4096)))
