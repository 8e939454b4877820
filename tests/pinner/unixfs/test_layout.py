"""The streaming balanced builder against an independent recursive transcription of go-unixfs, on
trees deep enough to exercise every level-flush path, and the tree's shape where it is documented."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinner.dagpb import decode_node
from pinner.unixfs import UnixfsParams, compute_cid, hash_file
from pinner.unixfs.format import decode_data
from pinner.unixfs.pipeline import ChunkPipeline, PipelineConfig
from tests.pinner.unixfs.reference import reference_root


def _build(data: bytes, params: UnixfsParams, config: PipelineConfig | None = None) -> bytes:
    pipeline = ChunkPipeline(params, config=config)
    pipeline.write(data)
    return bytes(pipeline.finish().root)


@pytest.mark.parametrize("max_links", [2, 3, 5])
@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("version", [0, 1])
def test_deep_trees_match_reference_for_every_length(max_links: int, raw: bool, version: int) -> None:
    params = UnixfsParams(chunk_size=3, max_links=max_links, cid_version=version, raw_leaves=raw)
    data = os.urandom(3 * 40)
    for length in range(0, len(data) + 1, 1 if max_links == 2 else 2):
        got = _build(data[:length], params)
        assert got == reference_root(data[:length], 3, max_links, version, raw), length


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=300),
    chunk=st.integers(1, 17),
    max_links=st.integers(2, 6),
    batch=st.integers(1, 64),
    workers=st.integers(1, 3),
)
def test_any_batching_gives_the_reference_root(
    data: bytes, chunk: int, max_links: int, batch: int, workers: int
) -> None:
    params = UnixfsParams(chunk_size=chunk, max_links=max_links, cid_version=0)
    config = PipelineConfig(batch_bytes=batch, max_in_flight=1, workers=workers)
    assert _build(data, params, config) == reference_root(data, chunk, max_links, 0, False)


def test_writes_in_odd_pieces_match_one_read() -> None:
    data = os.urandom(50_000)
    params = UnixfsParams(chunk_size=1000, max_links=4)
    config = PipelineConfig(batch_bytes=3000, max_in_flight=2)
    pipeline = ChunkPipeline(params, config=config)
    for i in range(0, len(data), 777):
        pipeline.write(data[i : i + 777])
    assert pipeline.finish().root == hash_file(io.BytesIO(data), params, config=config).cid


def test_175_chunks_is_the_first_file_whose_root_links_two_nodes() -> None:
    params = UnixfsParams(chunk_size=1)
    for n, links in [(174, 174), (175, 2)]:
        pipeline = ChunkPipeline(params, record_leaves=True)
        pipeline.write(b"x" * n)
        result = pipeline.finish()
        root = dict(result.nodes)[bytes(result.root)]
        node = decode_node(root)
        assert len(node.links) == links
        assert decode_data(node.data or b"").filesize == n
        assert bytes(result.root) == reference_root(b"x" * n, 1, 174, 0, False)
    second = dict(result.nodes)[node.links[1].cid_bytes]
    assert len(decode_node(second).links) == 1  # a one-child node is kept, not collapsed


def test_single_chunk_file_is_its_own_leaf_root() -> None:
    result = ChunkPipeline(UnixfsParams(), record_leaves=True)
    result.write(b"abc")
    out = result.finish()
    assert out.nodes == []
    assert out.leaves is not None and out.leaves[0].cid_bytes == bytes(out.root)


def test_profile_v1_2025_uses_1mib_chunks_and_1024_links() -> None:
    from pinner.unixfs import PROFILES

    params = PROFILES["unixfs-v1-2025"]
    data = bytes(1024 * 1024 + 1)
    cid, size = compute_cid(io.BytesIO(data), params)
    assert size == len(data)
    assert cid.version == 1
    assert bytes(cid) == reference_root(data, 1024 * 1024, 1024, 1, True)


def test_cidv0_with_raw_leaves_keeps_a_v0_root() -> None:
    params = UnixfsParams(chunk_size=4, cid_version=0, raw_leaves=True)
    cid, _ = compute_cid(io.BytesIO(b"0123456789"), params)
    assert cid.version == 0
    assert bytes(cid) == reference_root(b"0123456789", 4, 174, 0, True)
