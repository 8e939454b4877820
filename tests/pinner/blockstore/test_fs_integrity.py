"""Verification on every read, quarantine, loose blocks, atomic CAR import, concurrent use."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading

import pytest
from multiformats import CID

from pinner.blockstore import FsBlockstore
from pinner.car import write_car
from pinner.content_errors import BlockNotFound, CorruptBlock, InvalidBlock, InvalidCar, InvalidCid
from tests.pinner.blockstore.conftest import SMALL

DATA = os.urandom(10 * 1024)


def _ingest(store: FsBlockstore, data: bytes = DATA):  # type: ignore[no-untyped-def]
    writer = store.begin_file(SMALL)
    writer.write(data)
    return writer.commit()


def _flip_byte(path: os.PathLike[str], offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_corrupt_file_bytes_are_never_served_and_quarantined(
    store: FsBlockstore, caplog: pytest.LogCaptureFixture
) -> None:
    digest = _ingest(store)
    _flip_byte(store.file_path(digest.cid), 5000)
    with (
        caplog.at_level(logging.ERROR, logger="pinner.blockstore"),
        pytest.raises(CorruptBlock, match="quarantined"),
    ):
        b"".join(store.iter_file_bytes(digest.cid, 4096, 6000))
    assert "quarantining" in caplog.text
    assert not store.has(digest.cid)
    assert list((store.root / "quarantine").iterdir())
    with pytest.raises(BlockNotFound):
        store.get_block(digest.cid)


def test_undamaged_ranges_of_a_file_still_read_before_corruption_is_hit(store: FsBlockstore) -> None:
    digest = _ingest(store)
    _flip_byte(store.file_path(digest.cid), 9000)
    assert b"".join(store.iter_file_bytes(digest.cid, 0, 1024)) == DATA[:1024]


def test_put_block_checks_the_hash(store: FsBlockstore) -> None:
    cid = CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(b"hello").digest()))
    with pytest.raises(InvalidBlock, match=str(cid)):
        store.put_block(cid, b"HELLO")
    store.put_block(cid, b"hello")
    assert store.get_block(cid) == b"hello"
    assert store.block_size(cid) == 5


def test_corrupt_loose_block_is_quarantined(store: FsBlockstore) -> None:
    cid = CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(b"hello").digest()))
    store.put_block(cid, b"hello")
    (path,) = [p for p in (store.root / "blocks").rglob("*") if p.is_file()]
    path.write_bytes(b"jello")
    with pytest.raises(CorruptBlock):
        store.get_block(cid)
    assert not store.has(cid)


def test_malformed_and_unsupported_cids_are_invalid(store: FsBlockstore) -> None:
    with pytest.raises(InvalidCid):
        store.has("not-a-cid")
    with pytest.raises(InvalidCid, match="sha2-512"):
        store.has(CID("base32", 1, "raw", ("sha2-512", hashlib.sha512(b"x").digest())))


def _car_of(store: FsBlockstore, root: CID) -> bytes:
    return b"".join(store.export_car(root))


def test_car_import_round_trip_and_delete_frees_blocks(store: FsBlockstore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = FsBlockstore(tmp_path / "source")
    digest = _ingest(source)
    assert store.import_car(io.BytesIO(_car_of(source, digest.cid))) == [digest.cid]
    assert b"".join(store.iter_file_bytes(digest.cid, 100, 5000)) == DATA[100:5000]
    store.delete_file(digest.cid)
    assert not store.has(digest.cid)
    assert not [p for p in (store.root / "blocks").rglob("*") if p.is_file()]


def test_delete_of_one_dag_keeps_blocks_another_dag_needs(store: FsBlockstore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = FsBlockstore(tmp_path / "source")
    a = _ingest(source, DATA)
    b = _ingest(source, DATA + b"tail")  # shares all but the last leaves
    store.import_car(io.BytesIO(_car_of(source, a.cid)))
    store.import_car(io.BytesIO(_car_of(source, b.cid)))
    store.delete_file(a.cid)
    assert b"".join(store.iter_file_bytes(b.cid)) == DATA + b"tail"


def _blocks_on_disk(store: FsBlockstore) -> list[str]:
    return [p.name for p in (store.root / "blocks").rglob("*") if p.is_file()] + [
        p.name for p in (store.root / "dags").iterdir()
    ]


def test_truncated_car_imports_nothing(store: FsBlockstore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = FsBlockstore(tmp_path / "source")
    digest = _ingest(source)
    car = _car_of(source, digest.cid)
    with pytest.raises(InvalidCar, match="truncated at offset"):
        store.import_car(io.BytesIO(car[: len(car) - 10]))
    assert _blocks_on_disk(store) == []
    assert list((store.root / "tmp").iterdir()) == []


def test_car_missing_a_block_of_its_root_imports_nothing(store: FsBlockstore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = FsBlockstore(tmp_path / "source")
    digest = _ingest(source)
    blocks = list(source.iter_dag_blocks(digest.cid))
    car = b"".join(write_car([digest.cid], blocks[:-1]))
    with pytest.raises(InvalidCar, match="incomplete"):
        store.import_car(io.BytesIO(car))
    assert _blocks_on_disk(store) == []


def test_concurrent_ingest_and_reads_from_threads(store: FsBlockstore) -> None:
    payloads = [os.urandom(8000 + i) for i in range(6)] + [DATA] * 2  # two identical files race
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            digest = _ingest(store, payloads[i])
            for _ in range(5):
                assert b"".join(store.iter_file_bytes(digest.cid)) == payloads[i]
            results[i] = digest
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(results) == len(payloads)
    assert len(list((store.root / "files").iterdir())) == 7
    reopened = FsBlockstore(store.root)
    assert len(reopened.roots()) == 7


def test_truncated_data_file_is_corruption_not_short_data(store: FsBlockstore) -> None:
    digest = _ingest(store)
    path = store.file_path(digest.cid)
    os.truncate(path, 9000)
    with pytest.raises(CorruptBlock):
        b"".join(store.iter_file_bytes(digest.cid, 8500))
    assert not store.has(digest.cid)


async def test_import_car_async_from_chunks(store: FsBlockstore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = FsBlockstore(tmp_path / "source")
    digest = _ingest(source)
    car = _car_of(source, digest.cid)

    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(car), 999):
            yield car[i : i + 999]

    assert await store.import_car_async(chunks()) == [digest.cid]
    assert b"".join(store.iter_file_bytes(digest.cid)) == DATA
    assert list((store.root / "tmp").iterdir()) == []


async def test_import_car_async_corrupt_leaves_nothing(store: FsBlockstore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = FsBlockstore(tmp_path / "source")
    digest = _ingest(source)
    car = bytearray(_car_of(source, digest.cid))
    car[-5] ^= 0xFF

    async def chunks():  # type: ignore[no-untyped-def]
        yield bytes(car)

    with pytest.raises(InvalidCar, match="does not match"):
        await store.import_car_async(chunks())
    assert _blocks_on_disk(store) == []
    assert list((store.root / "tmp").iterdir()) == []
