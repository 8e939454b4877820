"""Moving whole DAGs in and out of a block store: CAR export and atomic CAR import.

Both see the store only through ``DagStore``: verified reads, a staging folder, and the two publishing
steps. Deleting a root (which keeps every byte another live root still needs) is ``StoreState.delete_root``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from multiformats import CID

from pinner.car import CarLimits, read_car, write_car
from pinner.cids import block_key, cid_from_bytes, cid_str
from pinner.content_errors import BlockNotFound, InvalidCar
from pinner.unixfs import reader


class DagStore(Protocol):
    """What CAR transfer needs from a block store."""

    @property
    def tmp_dir(self) -> Path:
        """A folder on the store's file system for staging (renames out of it are atomic)."""
        ...

    @property
    def fsync(self) -> bool:
        """Whether staged bytes must be synced before they are published."""
        ...

    def has(self, cid: bytes) -> bool: ...

    def get_block(self, cid: bytes) -> bytes:
        """The block's bytes, verified against ``cid`` (BlockNotFound / CorruptBlock otherwise)."""
        ...

    def publish_blocks(self, staged: list[tuple[bytes, Path]]) -> None:
        """Moves staged ``(block key, temp file)`` pairs into the store."""
        ...

    def add_dag_roots(self, roots: list[CID], staging: Path) -> None:
        """Records the roots of a DAG whose blocks are all published."""
        ...


def export_car(store: DagStore, root: bytes) -> Iterator[bytes]:
    """A CARv1 of the DAG under ``root``; BlockNotFound / CorruptBlock raised before the stream starts."""
    store.get_block(root)
    return write_car([cid_from_bytes(root)], reader.iter_dag(root, store.get_block))


def import_car(store: DagStore, stream: BinaryIO, limits: CarLimits) -> list[CID]:
    """Stages every verified block in a temp folder, checks each root's DAG is complete, then publishes."""
    staging = store.tmp_dir / f"import-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        roots, blocks = read_car(stream, limits)
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
                if store.fsync:
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
        store.publish_blocks([(key, path) for key, (_raw, path) in staged.items()])
        store.add_dag_roots(roots, staging)
        return roots
    finally:
        shutil.rmtree(staging, ignore_errors=True)


async def import_car_async(store: DagStore, chunks: AsyncIterable[bytes], limits: CarLimits) -> list[CID]:
    """Spools an async CAR stream to a temp file, then imports it in a thread (flat memory, same atomicity)."""
    spool = store.tmp_dir / f"car-{uuid.uuid4().hex}"
    f = await asyncio.to_thread(spool.open, "w+b")
    try:
        async for chunk in chunks:
            await asyncio.to_thread(f.write, chunk)
        await asyncio.to_thread(f.seek, 0)
        return await asyncio.to_thread(import_car, store, f, limits)
    finally:
        await asyncio.to_thread(f.close)
        spool.unlink(missing_ok=True)
