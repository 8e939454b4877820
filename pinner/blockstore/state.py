"""The FsBlockstore's folders, in-memory maps and lock, and every step that reads or changes them.

``fs.py`` builds the public store on a ``StoreState``; the file writer and CAR transfer reach it only
through their own narrow Protocols (``writer.FileCommitter``, ``transfer.DagStore``), so none of the
three imports another. Every block read here is re-hashed against its CID; one that fails is
quarantined, logged and never served. The maps are guarded by one lock; reads run outside it.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from multiformats import CID

from pinner.blockstore.config import fsync_dir
from pinner.blockstore.index import FileIndex
from pinner.cids import (
    DAG_PB,
    RAW,
    block_key,
    block_matches,
    cid_from_bytes,
    cid_str,
    split_cid,
    verify_block,
)
from pinner.content_errors import BlockNotFound, CorruptBlock
from pinner.dagpb import DagPbError, decode_node
from pinner.unixfs.format import leaf_envelope

log = logging.getLogger("pinner.blockstore")


@dataclass(frozen=True, slots=True)
class LeafLoc:
    """Where a leaf's payload sits in a stored file; ``raw`` leaves are stored without an envelope."""

    data_name: str
    offset: int
    length: int
    raw: bool


class StoreState:
    """The store's folders under ``root``, its maps of files, leaves, nodes and DAG roots, and its lock."""

    def __init__(self, root: Path, *, fsync: bool) -> None:
        self.fsync = fsync
        self.files_dir = root / "files"
        self.index_dir = root / "index"
        self.blocks_dir = root / "blocks"
        self.dags_dir = root / "dags"
        self.quarantine_dir = root / "quarantine"
        self.tmp_dir = root / "tmp"
        for d in (self.files_dir, self.index_dir, self.blocks_dir, self.dags_dir, self.quarantine_dir):
            d.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)  # abandoned ingests and imports
        self.tmp_dir.mkdir()
        self.lock = threading.RLock()
        self.files: dict[bytes, FileIndex] = {}
        self.leaves: dict[bytes, LeafLoc] = {}
        self.nodes: dict[bytes, bytes] = {}
        self.dag_roots: dict[bytes, bytes] = {}
        self._load()

    # -- startup -------------------------------------------------------------------------------
    def _load(self) -> None:
        for path in sorted(self.index_dir.glob("*.json")):
            try:
                idx = FileIndex.from_json(path.read_bytes())
                data = self.files_dir / idx.data_name
                if data.stat().st_size != idx.size:
                    raise ValueError(f"data file {data.name} is not {idx.size} bytes")
                for cid, block in idx.nodes:
                    verify_block(cid, block)
            except Exception as e:
                log.error("quarantining unreadable file index %s: %s", path.name, e)
                self.move_to_quarantine(path)
                continue
            self.files[block_key(idx.root)] = idx
        for path in self.dags_dir.iterdir():
            cid = path.read_bytes()
            self.dag_roots[block_key(cid)] = cid
        self.rebuild_maps()

    def rebuild_maps(self) -> None:
        leaves: dict[bytes, LeafLoc] = {}
        nodes: dict[bytes, bytes] = {}
        for idx in self.files.values():
            for leaf in idx.leaves:
                raw = split_cid(leaf.cid_bytes)[1] == RAW
                leaves.setdefault(
                    block_key(leaf.cid_bytes), LeafLoc(idx.data_name, leaf.offset, leaf.length, raw)
                )
            for cid, block in idx.nodes:
                nodes[block_key(cid)] = block
        self.leaves, self.nodes = leaves, nodes

    # -- paths and quarantine ------------------------------------------------------------------
    def block_path(self, key: bytes) -> Path:
        name = key.hex()
        return self.blocks_dir / name[-3:-1] / name

    def move_to_quarantine(self, path: Path) -> None:
        target = self.quarantine_dir / f"{path.name}.{time.time_ns()}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            pass

    def quarantine_data(self, data_name: str, cid: bytes, why: str) -> None:
        if not data_name or "/" in data_name:
            raise ValueError(f"refusing to quarantine data file named {data_name!r}")
        with self.lock:
            log.error(
                "block %s failed verification (%s); quarantining data file %s", cid_str(cid), why, data_name
            )
            self.move_to_quarantine(self.files_dir / data_name)
            for key, idx in list(self.files.items()):
                if idx.data_name == data_name:
                    self.move_to_quarantine(self.index_dir / f"{key.hex()}.json")
                    del self.files[key]
            self.rebuild_maps()

    # -- verified reads ------------------------------------------------------------------------
    def has(self, cid: bytes) -> bool:
        key = block_key(cid)
        with self.lock:
            if key in self.nodes or key in self.leaves:
                return True
        return self.block_path(key).exists()

    def get_block(self, cid: bytes) -> bytes:
        """The block's bytes, re-hashed against ``cid``; CorruptBlock (quarantined) when they do not match."""
        key = block_key(cid)
        with self.lock:
            node = self.nodes.get(key)
            loc = self.leaves.get(key)
        if node is not None:
            if not block_matches(cid, node):
                raise CorruptBlock(f"interior node {cid_str(cid)} does not match its CID", cid=cid_str(cid))
            return node
        if loc is not None:
            return self.read_leaf(cid, loc, None)
        path = self.block_path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_str(cid)} is not in this store", cid=cid_str(cid)) from None
        if not block_matches(cid, data):
            log.error("block %s in %s failed verification; quarantining it", cid_str(cid), path)
            self.move_to_quarantine(path)
            raise CorruptBlock(f"stored block {cid_str(cid)} does not match its CID", cid=cid_str(cid))
        return data

    def read_leaf(self, cid: bytes, loc: LeafLoc, fd: int | None) -> bytes:
        """A leaf block rebuilt from its file slice (``fd`` reused when given), verified against ``cid``."""
        own = fd is None
        try:
            if fd is None:
                fd = os.open(self.files_dir / loc.data_name, os.O_RDONLY)
            data = os.pread(fd, loc.length, loc.offset)
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_str(cid)} is not in this store", cid=cid_str(cid)) from None
        finally:
            if own and fd is not None:
                os.close(fd)
        complete = len(data) == loc.length
        if not loc.raw:
            prefix, suffix = leaf_envelope(len(data))
            data = prefix + data + suffix
        if not complete or not block_matches(cid, data):
            self.quarantine_data(loc.data_name, cid, "leaf slice does not match")
            raise CorruptBlock(
                f"block {cid_str(cid)} (bytes {loc.offset}..{loc.offset + loc.length} of a stored file) does not "
                "match its CID; the file was quarantined",
                cid=cid_str(cid),
                offset=loc.offset,
            )
        return data

    def block_size(self, cid: bytes) -> int:
        key = block_key(cid)
        with self.lock:
            node = self.nodes.get(key)
            loc = self.leaves.get(key)
        if node is not None:
            return len(node)
        if loc is not None:
            if loc.raw:
                return loc.length
            prefix, suffix = leaf_envelope(loc.length)
            return len(prefix) + loc.length + len(suffix)
        try:
            return self.block_path(key).stat().st_size
        except FileNotFoundError:
            raise BlockNotFound(f"block {cid_str(cid)} is not in this store", cid=cid_str(cid)) from None

    def file_index(self, root: bytes) -> FileIndex | None:
        """The index of the file ingested under ``root``, or None (not a file, or an imported DAG)."""
        with self.lock:
            return self.files.get(block_key(root))

    def roots(self) -> list[CID]:
        """Live roots: ingested files and imported DAGs."""
        with self.lock:
            raws = [idx.root for idx in self.files.values()] + list(self.dag_roots.values())
        return [cid_from_bytes(r) for r in dict.fromkeys(raws)]

    # -- writes --------------------------------------------------------------------------------
    def write_tmp(self, data: bytes) -> Path:
        path = self.tmp_dir / f"blk-{threading.get_ident()}-{time.time_ns()}"
        with path.open("wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        return path

    def publish_blocks(self, staged: list[tuple[bytes, Path]]) -> None:
        """Renames staged ``(key, temp file)`` pairs into the loose-block folder."""
        dirs: set[Path] = set()
        with self.lock:
            for key, tmp in staged:
                target = self.block_path(key)
                target.parent.mkdir(exist_ok=True)
                os.replace(tmp, target)
                dirs.add(target.parent)
            if self.fsync:
                for d in dirs:
                    fsync_dir(d)

    def add_dag_roots(self, roots: list[CID], staging: Path) -> None:
        """Records imported DAG roots (their blocks already published); markers are written via ``staging``."""
        with self.lock:
            for root in roots:
                marker = self.dags_dir / block_key(bytes(root)).hex()
                tmp = staging / f"{marker.name}.root"
                tmp.write_bytes(bytes(root))
                os.replace(tmp, marker)
                self.dag_roots[block_key(bytes(root))] = bytes(root)
            if self.fsync:
                fsync_dir(self.dags_dir)

    def commit_file(self, index: FileIndex, data_tmp: Path, index_tmp: Path) -> None:
        """Makes a written file visible: its data (reusing identical bytes already stored) and its index."""
        with self.lock:
            data_path = self.files_dir / index.data_name
            if data_path.exists() and data_path.stat().st_size == index.size:
                data_tmp.unlink()  # identical bytes are already stored once
            else:
                os.replace(data_tmp, data_path)
            os.replace(index_tmp, self.index_dir / f"{block_key(index.root).hex()}.json")
            if self.fsync:
                fsync_dir(self.files_dir)
                fsync_dir(self.index_dir)
            self.files[block_key(index.root)] = index
            self.rebuild_maps()

    # -- deletion ------------------------------------------------------------------------------
    def delete_root(self, root: bytes) -> None:
        """Forgets a file or imported DAG root; bytes still needed by another live root are kept."""
        key = block_key(root)
        with self.lock:
            idx = self.files.pop(key, None)
            dag_root = self.dag_roots.pop(key, None)
            if idx is None and dag_root is None:
                raise BlockNotFound(
                    f"no file or DAG with root {cid_str(root)} is stored here", cid=cid_str(root)
                )
            if idx is not None:
                (self.index_dir / f"{key.hex()}.json").unlink(missing_ok=True)
                if not any(other.data_name == idx.data_name for other in self.files.values()):
                    (self.files_dir / idx.data_name).unlink(missing_ok=True)
                self.rebuild_maps()
            if dag_root is not None:
                (self.dags_dir / key.hex()).unlink(missing_ok=True)
                doomed = self._reachable_loose([dag_root])
                doomed -= self._reachable_loose(list(self.dag_roots.values()))
                for block in doomed:
                    self.block_path(block).unlink(missing_ok=True)
            if self.fsync:
                for d in (self.index_dir, self.files_dir, self.dags_dir):
                    fsync_dir(d)

    def _reachable_loose(self, roots: list[bytes]) -> set[bytes]:
        """Keys of every block reachable from ``roots`` (missing or corrupt blocks end that branch)."""
        seen: set[bytes] = set()
        stack = list(roots)
        while stack:
            cid = stack.pop()
            key = block_key(cid)
            if key in seen:
                continue
            seen.add(key)
            if split_cid(cid)[1] != DAG_PB or key in self.leaves:
                continue
            try:
                node = decode_node(self.get_block(cid))
            except (BlockNotFound, CorruptBlock, DagPbError):
                continue
            stack.extend(link.cid_bytes for link in node.links)
        return seen
