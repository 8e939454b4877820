"""Gather a pack's shard bytes for the sandbox: the blockstore's own file, else a node's copy verified here.

The sandbox gets a folder with ``manifest.json`` (the pack's canonical bytes) and one symlink per shard.
A blockstore file is linked in place (zero-copy; the loader re-hashes exactly the bytes it maps); bytes
from a node are written to the work folder and kept only when both their UnixFS CID and sha256 match.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from model_core.format.digest import Sha256Digest
from model_core.format.fields import MANIFEST_NAME
from registry.packs import shardcheck
from registry.replication.shard_fetch import ShardFetcher

__all__ = [
    "FileStore",
    "GatheredPack",
    "ShardSpec",
    "ShardUnavailable",
    "gather",
    "verify_file",
]

log = logging.getLogger("modelpack.gate")


@dataclass(frozen=True)
class ShardSpec:
    filename: str
    cid: str
    sha256: Sha256Digest
    size: int
    profile: str | None = None


class FileStore(Protocol):
    """The embedded blockstore, as the gate needs it."""

    def file_path(self, root: str) -> Path: ...


class ShardUnavailable(Exception):
    """No copy of a shard could be found or verified; the validation is retried later."""


@dataclass
class GatheredPack:
    pack_dir: Path
    allowed_roots: tuple[Path, ...]
    sources: dict[str, str] = field(default_factory=dict)  # filename -> "blockstore" | "node:<name>"


async def gather(
    pack_dir: Path,
    manifest: bytes,
    shards: Sequence[ShardSpec],
    store: FileStore | None,
    fetcher: ShardFetcher | None,
    fetch_timeout_s: float | None = None,
) -> GatheredPack:
    """Fill ``pack_dir`` with the manifest and one entry per shard.

    Raises:
        ShardUnavailable: a shard is neither in the blockstore nor on a node that serves the right bytes.
    """
    out, missing = await asyncio.to_thread(_link_local, pack_dir, manifest, shards, store)
    for spec in missing:
        if fetcher is None:
            raise ShardUnavailable(f"shard {spec.filename} ({spec.cid}) is not in the blockstore")
        out.sources[spec.filename] = await _fetch_verified(
            fetcher, spec, pack_dir / spec.filename, fetch_timeout_s
        )
    return out


def _link_local(
    pack_dir: Path, manifest: bytes, shards: Sequence[ShardSpec], store: FileStore | None
) -> tuple[GatheredPack, list[ShardSpec]]:
    pack_dir.mkdir(parents=True, exist_ok=True)
    (pack_dir / MANIFEST_NAME).write_bytes(manifest)
    out = GatheredPack(pack_dir, ())
    roots: set[Path] = set()
    missing = []
    for spec in shards:
        local = _blockstore_file(store, spec)
        if local is None:
            missing.append(spec)
            continue
        os.symlink(local, pack_dir / spec.filename)
        roots.add(local.parent.resolve())
        out.sources[spec.filename] = "blockstore"
    out.allowed_roots = tuple(sorted(roots))
    return out, missing


def _blockstore_file(store: FileStore | None, spec: ShardSpec) -> Path | None:
    if store is None:
        return None
    try:
        path = store.file_path(spec.cid)
    except Exception:  # BlockNotFound, or a CID the store cannot parse: try the nodes
        return None
    try:
        if path.stat().st_size != spec.size:
            log.warning("blockstore file for %s has the wrong size; fetching it from a node", spec.cid)
            return None
    except OSError:
        return None
    return path


async def _fetch_verified(fetcher: ShardFetcher, spec: ShardSpec, dest: Path, timeout_s: float | None) -> str:
    errors: list[str] = []
    async for name, source in fetcher.sources():
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            async with asyncio.timeout(timeout_s):  # a node that stalls must not hold the validation forever
                with tmp.open("wb") as f:
                    written = 0
                    async for chunk in source.cat(spec.cid):
                        written += len(chunk)
                        if written > spec.size:
                            raise ShardUnavailable(f"{name} sent more than {spec.size} bytes")
                        f.write(chunk)
            problem = await asyncio.to_thread(verify_file, tmp, spec)
            if problem is None:
                os.replace(tmp, dest)
                return f"node:{name}"
            errors.append(f"{name}: {problem}")
        except Exception as e:  # one node failing is not the end: try the next
            errors.append(f"{name}: {e or type(e).__name__}")
        finally:
            tmp.unlink(missing_ok=True)
    why = "; ".join(errors) or "no IPFS node is configured"
    raise ShardUnavailable(f"no verified copy of shard {spec.filename} ({spec.cid}): {why}")


def verify_file(path: Path, spec: ShardSpec) -> str | None:
    """None when the file has the shard's size, UnixFS CID and sha256; else the first that differs."""
    return shardcheck.verify_file(
        path, cid=spec.cid, sha256=spec.sha256, size=spec.size, profile=spec.profile
    ).first()
