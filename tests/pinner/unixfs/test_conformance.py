"""Known ``ipfs add`` CIDs (tests/conformance/unixfs/vectors.json): files, empty file, directories."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from pinner.unixfs import UnixfsParams, build_directory, compute_cid, hash_directory, hash_file
from pinner.unixfs.pipeline import ChunkPipeline

VECTORS = Path(__file__).parents[2] / "conformance" / "unixfs"
DOC = json.loads((VECTORS / "vectors.json").read_text())

NAMED_DATA = {
    "262145 zero bytes": b"\0" * 262145,
    "bytes(range(256)) * 4096": bytes(range(256)) * 4096,
}


def _data(case: dict[str, object]) -> bytes:
    if "data_utf8" in case:
        return str(case["data_utf8"]).encode()
    return NAMED_DATA[str(case["data"])]


@pytest.mark.parametrize(
    "case", DOC["files"], ids=lambda c: f"{c.get('data_utf8', c.get('data'))!r}-v{c['cid_version']}"
)
def test_file_vectors_match_ipfs_add(case: dict[str, object]) -> None:
    params = UnixfsParams(cid_version=int(str(case["cid_version"])))
    data = _data(case)
    digest = hash_file(io.BytesIO(data), params)
    assert str(digest.cid) == case["cid"]
    assert digest.size == len(data)
    assert str(compute_cid(io.BytesIO(data), params)[0]) == case["cid"]


def test_hash_file_reports_the_whole_file_sha256() -> None:
    import hashlib

    data = bytes(range(256)) * 4096
    assert hash_file(io.BytesIO(data)).sha256 == hashlib.sha256(data).digest()


@pytest.mark.parametrize("version", [0, 1])
def test_directory_vector_from_folder(version: int) -> None:
    case = DOC["directories"][0]
    cid, _tsize = hash_directory(VECTORS / case["path"], UnixfsParams(cid_version=version))
    assert str(cid) == case[f"cid_version_{version}"]


def test_directory_vector_from_entries_in_any_order() -> None:
    case = DOC["directories"][0]
    params = UnixfsParams()
    entries = []
    for name, text in reversed(list(case["contents"].items())):
        pipeline = ChunkPipeline(params)
        pipeline.write(text.encode())
        result = pipeline.finish()
        entries.append((name, result.root, result.root_tsize))
    cid, block = build_directory(entries, params)
    assert str(cid) == case["cid_version_0"]
    assert block.index(b"mars.txt") < block.index(b"venus.txt")
