"""A real embedded blockstore with a few small files, the source replication pushes from."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.cids import cid_str
from pinner.unixfs.params import UnixfsParams

SMALL = UnixfsParams(chunk_size=1024, max_links=4, cid_version=1, raw_leaves=True)


@pytest.fixture
def store(tmp_path: Path) -> FsBlockstore:
    return FsBlockstore(tmp_path / "blocks", FsBlockstoreConfig(fsync=False))


def add_file(store: FsBlockstore, size: int, seed: bytes | None = None) -> str:
    """Ingest `size` random bytes (1 KiB chunks, 4 links per node: a few levels deep); returns the CID."""
    data = (seed or b"") + os.urandom(max(size - len(seed or b""), 0))
    return cid_str(store.ingest_file(io.BytesIO(data), SMALL).cid)
