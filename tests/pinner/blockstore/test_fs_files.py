"""Ingest into the filestore: visibility only on commit, durability across reopen, dedupe, ranges."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinner.blockstore import FsBlockstore
from pinner.car import read_car
from pinner.content_errors import BlockNotFound, DigestMismatch
from pinner.unixfs import UnixfsParams, hash_file
from tests.pinner.blockstore.conftest import SMALL

DATA = os.urandom(20 * 1024 + 17)


def _ingest(store: FsBlockstore, data: bytes, params: UnixfsParams = SMALL):  # type: ignore[no-untyped-def]
    writer = store.begin_file(params)
    for i in range(0, len(data), 3000):
        writer.write(data[i : i + 3000])
    return writer.commit()


def test_ingest_gives_the_same_digest_as_only_hash(store: FsBlockstore) -> None:
    digest = _ingest(store, DATA)
    assert digest == hash_file(io.BytesIO(DATA), SMALL)
    assert digest.sha256 == hashlib.sha256(DATA).digest()
    assert store.stat_file(digest.cid) == digest


def test_nothing_visible_before_commit_and_nothing_left_after_abort(store: FsBlockstore) -> None:
    writer = store.begin_file(SMALL)
    writer.write(DATA)
    digest = writer.finish()
    assert not store.has(digest.cid)
    writer.abort()
    assert not store.has(digest.cid)
    assert list((store.root / "tmp").iterdir()) == []
    assert list((store.root / "files").iterdir()) == []


def test_file_survives_reopen_with_every_block_readable(store: FsBlockstore, tmp_path: Path) -> None:
    digest = _ingest(store, DATA)
    reopened = FsBlockstore(store.root)
    assert b"".join(reopened.iter_file_bytes(digest.cid)) == DATA
    blocks = list(reopened.iter_dag_blocks(digest.cid))
    assert len(blocks) == 21 + 6 + 2 + 1  # 21 leaves under 6, then 2 nodes, then the root (4 links)
    assert reopened.file_path(digest.cid).read_bytes() == DATA


def test_identical_files_are_stored_once_and_delete_keeps_the_shared_bytes(store: FsBlockstore) -> None:
    a = _ingest(store, DATA, SMALL)
    b = _ingest(store, DATA, UnixfsParams(cid_version=1))
    assert a.cid != b.cid
    assert len(list((store.root / "files").iterdir())) == 1
    store.delete_file(a.cid)
    assert not store.has(a.cid)
    assert b"".join(store.iter_file_bytes(b.cid)) == DATA
    store.delete_file(b.cid)
    assert list((store.root / "files").iterdir()) == []
    with pytest.raises(BlockNotFound):
        store.delete_file(b.cid)


def test_leaf_blocks_are_served_as_kubo_would(store: FsBlockstore) -> None:
    digest = _ingest(store, DATA)
    car = b"".join(store.export_car(digest.cid))
    roots, blocks = read_car(io.BytesIO(car))  # read_car re-hashes every block
    assert roots == [digest.cid]
    sizes = {str(cid): store.block_size(cid) for cid, _ in store.iter_dag_blocks(digest.cid)}
    assert all(sizes[str(cid)] == len(data) for cid, data in blocks)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, len(DATA) + 10), length=st.integers(0, len(DATA)))
def test_any_range_is_exact(store: FsBlockstore, start: int, length: int) -> None:
    if not store.roots():
        _ingest(store, DATA)
    root = store.roots()[0]
    end = start + length
    assert b"".join(store.iter_file_bytes(root, start, end)) == DATA[start:end]


async def _chunks(data: bytes):  # type: ignore[no-untyped-def]
    for i in range(0, len(data), 1000):
        yield data[i : i + 1000]


async def test_ingest_async_commits_when_expectations_hold(store: FsBlockstore) -> None:
    want = hash_file(io.BytesIO(DATA), SMALL)
    got = await store.ingest_async(
        _chunks(DATA), SMALL, expected_cid=str(want.cid), expected_sha256=want.sha256
    )
    assert got == want
    assert store.has(want.cid)


@pytest.mark.parametrize("field", ["expected_cid", "expected_sha256"])
async def test_ingest_async_mismatch_names_both_and_leaves_nothing(store: FsBlockstore, field: str) -> None:
    want = hash_file(io.BytesIO(DATA), SMALL)
    wrong = {"expected_cid": "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o", "expected_sha256": "00" * 32}
    with pytest.raises(DigestMismatch) as e:
        await store.ingest_async(_chunks(DATA), SMALL, **{field: wrong[field]})
    assert wrong[field] in e.value.message
    assert (str(want.cid) if field == "expected_cid" else want.sha256.hex()) in e.value.message
    assert not store.has(want.cid)
    assert list((store.root / "tmp").iterdir()) == []
    assert list((store.root / "files").iterdir()) == []


def test_empty_file_round_trip(store: FsBlockstore) -> None:
    digest = _ingest(store, b"", UnixfsParams())
    assert str(digest.cid) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert b"".join(store.iter_file_bytes(digest.cid)) == b""


def test_reopen_after_a_crash_drops_partial_ingests_and_bad_indexes(store: FsBlockstore) -> None:
    kept = _ingest(store, DATA)
    lost = _ingest(store, DATA[::-1])
    writer = store.begin_file(SMALL)  # a crash mid-ingest leaves temp files behind
    writer.write(DATA)
    os.unlink(store.file_path(lost.cid))  # and an index whose data file is gone
    reopened = FsBlockstore(store.root)
    assert list((store.root / "tmp").iterdir()) == []
    assert [str(c) for c in reopened.roots()] == [str(kept.cid)]
    assert list((store.root / "quarantine").iterdir())
    writer.abort()
