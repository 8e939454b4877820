"""Moving whole DAGs in and out of the FsBlockstore: CAR export, atomic CAR import, and deletion of a
root that keeps every byte another live root still needs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from multiformats import CID

from pinner.blockstore.config import fsync_dir
from pinner.car import read_car, write_car
from pinner.content_errors import BlockNotFound, CorruptBlock, InvalidCar
from pinner.dagpb import DagPbError, decode_node
from pinner.digests import DAG_PB, block_key, cid_str, split_cid
from pinner.unixfs import reader

if TYPE_CHECKING:
    from pinner.blockstore.fs import FsBlockstore


def export_car(store: FsBlockstore, root: bytes) -> Iterator[bytes]:
    store.get_block(root)  # BlockNotFound / CorruptBlock before the stream starts
    return write_car([store._cid(root)], reader.iter_dag(root, store.get_block))


def import_car(store: FsBlockstore, stream: BinaryIO) -> list[CID]:
    """Stages every verified block in a temp folder, checks each root's DAG is complete, then publishes."""
    staging = store._tmp_dir / f"import-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        roots, blocks = read_car(stream, store.config.car_limits)
        if not roots:
            raise InvalidCar("CAR has no roots; refusing to store unreferenced blocks")
        staged: dict[bytes, tuple[bytes, Path]] = {}
        for cid, data in blocks:
            raw = bytes(cid)
            key = block_key(raw)
            if key in staged or store.has(raw):
                continue
            path = staging / key.hex()
            with path.open("wb") as f:
                f.write(data)
                if store.config.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            staged[key] = (raw, path)

        def get(cid: bytes) -> bytes:
            entry = staged.get(block_key(cid))
            if entry is not None:
                with open(entry[1], "rb") as f:
                    return f.read()
            return store.get_block(cid)

        for root in roots:
            try:
                for _ in reader.iter_dag(bytes(root), get):
                    pass
            except BlockNotFound as e:
                raise InvalidCar(
                    f"CAR is incomplete: {e.message} (reachable from root {cid_str(root)})",
                    root=cid_str(root),
                ) from e
        store._publish_blocks([(key, path) for key, (_raw, path) in staged.items()])
        with store._lock:
            for root in roots:
                marker = store._dags_dir / block_key(bytes(root)).hex()
                tmp = staging / f"{marker.name}.root"
                tmp.write_bytes(bytes(root))
                os.replace(tmp, marker)
                store._dag_roots[block_key(bytes(root))] = bytes(root)
            if store.config.fsync:
                fsync_dir(store._dags_dir)
        return roots
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def import_car_async(store: FsBlockstore, chunks: AsyncIterable[bytes]) -> list[CID]:
    """Spools an async CAR stream to a temp file, then imports it in a thread (flat memory, same atomicity)."""
    spool = store._tmp_dir / f"car-{uuid.uuid4().hex}"
    f = await asyncio.to_thread(spool.open, "w+b")
    try:
        async for chunk in chunks:
            await asyncio.to_thread(f.write, chunk)
        await asyncio.to_thread(f.seek, 0)
        return await asyncio.to_thread(import_car, store, f)
    finally:
        await asyncio.to_thread(f.close)
        spool.unlink(missing_ok=True)


def _reachable_loose(store: FsBlockstore, roots: list[bytes]) -> set[bytes]:
    """Keys of every block reachable from ``roots`` (missing or corrupt blocks end that branch)."""
    seen: set[bytes] = set()
    stack = list(roots)
    while stack:
        cid = stack.pop()
        key = block_key(cid)
        if key in seen:
            continue
        seen.add(key)
        if split_cid(cid)[1] != DAG_PB or key in store._leaves:
            continue
        try:
            node = decode_node(store.get_block(cid))
        except (BlockNotFound, CorruptBlock, DagPbError):
            continue
        stack.extend(link.cid_bytes for link in node.links)
    return seen


def delete_root(store: FsBlockstore, root: bytes) -> None:
    key = block_key(root)
    with store._lock:
        idx = store._files.pop(key, None)
        dag_root = store._dag_roots.pop(key, None)
        if idx is None and dag_root is None:
            raise BlockNotFound(f"no file or DAG with root {cid_str(root)} is stored here", cid=cid_str(root))
        if idx is not None:
            (store._index_dir / f"{key.hex()}.json").unlink(missing_ok=True)
            if not any(other.data_name == idx.data_name for other in store._files.values()):
                (store._files_dir / idx.data_name).unlink(missing_ok=True)
            store._rebuild_maps()
        if dag_root is not None:
            (store._dags_dir / key.hex()).unlink(missing_ok=True)
            doomed = _reachable_loose(store, [dag_root])
            doomed -= _reachable_loose(store, list(store._dag_roots.values()))
            for block in doomed:
                store._block_path(block).unlink(missing_ok=True)
        if store.config.fsync:
            for d in (store._index_dir, store._files_dir, store._dags_dir):
                fsync_dir(d)
