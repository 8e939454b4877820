"""Checks a pack folder without torch: manifest, safe shard paths, sizes, headers and the memory it needs.

The sandbox supervisor runs this before starting a child, so an oversized or malformed pack is refused
up front; the loader runs it again and then re-validates every header from the verified bytes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from model_core.errors import PackInvalid, PackTooLarge
from model_core.manifest import Manifest, PackLimits, ShardEntry, read_manifest
from model_core.shard_header import ShardHeader, read_header

# Address space the validation child needs besides the weights: the torch import, thread stacks and
# allocator arenas, activations of the smoke suite. Measured ~1.3 GiB virtual for torch 2.13 CPU.
DEFAULT_RUNTIME_OVERHEAD_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class ShardPlan:
    entry: ShardEntry
    path: Path
    size: int
    header: ShardHeader


@dataclass(frozen=True)
class PackPlan:
    pack_dir: Path
    manifest: Manifest
    shards: tuple[ShardPlan, ...]

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.shards)

    def memory_needed(self, overhead_bytes: int = DEFAULT_RUNTIME_OVERHEAD_BYTES) -> int:
        """Shard bytes are held once (tensors are views of the verified buffers), plus the runtime."""
        return self.total_bytes + overhead_bytes


def resolve_shard(pack_dir: Path, filename: str, allowed_roots: tuple[Path, ...] = ()) -> tuple[Path, int]:
    """The real path and size of a shard; a symlink may only point inside the pack or an allowed root."""
    base = Path(pack_dir).resolve()
    candidate = base / filename
    try:
        st = os.lstat(candidate)
    except FileNotFoundError:
        raise PackInvalid(
            f"shard {filename!r} is listed in the manifest but missing", shard=filename
        ) from None
    real = candidate.resolve() if stat.S_ISLNK(st.st_mode) else candidate
    roots = (base, *(Path(r).resolve() for r in allowed_roots))
    if not any(real == r or r in real.parents for r in roots):
        raise PackInvalid(
            f"shard {filename!r} is a symlink to {real}, outside the pack folder; refusing to read it",
            shard=filename,
        )
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise PackInvalid(f"shard {filename!r} is a dangling symlink", shard=filename) from None
    if not stat.S_ISREG(st.st_mode):
        raise PackInvalid(f"shard {filename!r} is not a regular file", shard=filename)
    return real, st.st_size


def plan_pack(
    pack_dir: Path | str,
    limits: PackLimits = PackLimits(),
    *,
    allowed_roots: tuple[Path, ...] = (),
    memory_budget_bytes: int | None = None,
    overhead_bytes: int = DEFAULT_RUNTIME_OVERHEAD_BYTES,
    parse_headers_up_to: int | None = None,
) -> PackPlan:
    """Validate everything that can be checked without reading the tensor data.

    Raises:
        PackInvalid: a bad manifest, filename, size or header.
        PackTooLarge: the pack would not fit ``memory_budget_bytes``.

    ``parse_headers_up_to``: headers declaring more bytes are length-checked only (``deferred``).
    """
    pack_dir = Path(pack_dir)
    if not pack_dir.is_dir():
        raise PackInvalid(f"pack folder {pack_dir} does not exist or is not a folder")
    manifest = read_manifest(pack_dir, limits)
    shards = []
    n_tensors = 0
    for entry in manifest.shards:
        path, size = resolve_shard(pack_dir, entry.filename, allowed_roots)
        if entry.size is not None and entry.size != size:
            raise PackInvalid(
                f"shard {entry.filename!r} is {size} bytes but the manifest says {entry.size} "
                "(truncated or changed)",
                shard=entry.filename,
            )
        header = read_header(path, size, entry.filename, limits.header_max_bytes, parse_headers_up_to)
        n_tensors += len(header.tensors)
        if n_tensors > limits.max_tensors:
            raise PackInvalid(f"the pack has more than {limits.max_tensors} tensors")
        shards.append(ShardPlan(entry=entry, path=path, size=size, header=header))
    plan = PackPlan(pack_dir=pack_dir, manifest=manifest, shards=tuple(shards))
    if memory_budget_bytes is not None:
        needed = plan.memory_needed(overhead_bytes)
        if needed > memory_budget_bytes:
            raise PackTooLarge(needed, memory_budget_bytes)
    return plan
