"""The ModelPack manifest (the seed's §3) parsed strictly enough to trust its filenames and digests.

Torch-free: the sandbox supervisor reads manifests before it spends a child process on them.
CIDs are carried but not checked here (that needs the pinner, which model_core must not import);
sha256 digests and structure are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_core.errors import PackInvalid

MANIFEST_NAME = "manifest.json"
_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class PackLimits:
    """Budgets an attacker could probe with a hostile pack."""

    manifest_max_bytes: int = 1024 * 1024
    max_shards: int = 4096
    filename_max_len: int = 255
    header_max_bytes: int = 100_000_000
    max_tensors: int = 1_000_000


@dataclass(frozen=True)
class ShardEntry:
    filename: str
    cid: str
    sha256_hex: str
    size: int | None = None


@dataclass(frozen=True)
class Manifest:
    format: str
    config: dict[str, Any]
    shards: tuple[ShardEntry, ...]
    model_name: str = "ProductionTransformer-RAGE"
    model_version: str = ""
    tokenizer: Any = None
    license: Any = None
    provenance: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def check_filename(name: Any, limits: PackLimits) -> str:
    """A shard filename must be one plain path component inside the pack folder."""
    if not isinstance(name, str) or not name:
        raise PackInvalid(f"shard filename {name!r} must be a non-empty string")
    if len(name) > limits.filename_max_len:
        raise PackInvalid(
            f"shard filename {name[:40]!r}... is longer than {limits.filename_max_len} characters"
        )
    if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
        raise PackInvalid(
            f"shard filename {name!r} is unsafe: it must be a plain file name inside the pack folder "
            "(no '/', '\\', '..', leading '.' or absolute path)",
            shard=name,
        )
    if any(ord(c) < 32 for c in name):
        raise PackInvalid(f"shard filename {name!r} contains control characters", shard=name)
    return name


def parse_manifest(raw: bytes, limits: PackLimits = PackLimits()) -> Manifest:
    """Parse and validate manifest bytes; unknown top-level keys are kept in ``extra``.

    Raises:
        PackInvalid: naming the bad key or value.
    """
    if len(raw) > limits.manifest_max_bytes:
        raise PackInvalid(f"manifest is {len(raw)} bytes, more than the limit of {limits.manifest_max_bytes}")
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise PackInvalid(f"manifest is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise PackInvalid("manifest must be a JSON object")
    fmt = data.get("format")
    if not isinstance(fmt, str) or fmt.lower() != "safetensors":
        raise PackInvalid(f"manifest format {fmt!r} is not supported; only 'safetensors' is")
    config = data.get("config")
    if not isinstance(config, dict):
        raise PackInvalid("manifest 'config' must be a JSON object")
    shards_raw = data.get("shards")
    if not isinstance(shards_raw, list) or not shards_raw:
        raise PackInvalid("manifest 'shards' must be a non-empty list")
    if len(shards_raw) > limits.max_shards:
        raise PackInvalid(
            f"manifest lists {len(shards_raw)} shards, more than the limit of {limits.max_shards}"
        )
    shards = tuple(_shard(i, s, limits) for i, s in enumerate(shards_raw))
    seen: set[str] = set()
    for s in shards:
        if s.filename in seen:
            raise PackInvalid(f"shard filename {s.filename!r} is listed twice", shard=s.filename)
        seen.add(s.filename)
    for key in ("model_name", "model_version"):
        if key in data and not isinstance(data[key], str):
            raise PackInvalid(f"manifest {key!r} must be a string")
    known = {
        "format",
        "config",
        "shards",
        "model_name",
        "model_version",
        "tokenizer",
        "license",
        "provenance",
    }
    return Manifest(
        format="safetensors",
        config=config,
        shards=shards,
        model_name=data.get("model_name", "ProductionTransformer-RAGE"),
        model_version=data.get("model_version", ""),
        tokenizer=data.get("tokenizer"),
        license=data.get("license"),
        provenance=data.get("provenance"),
        extra={k: v for k, v in data.items() if k not in known},
    )


def read_manifest(pack_dir: Path, limits: PackLimits = PackLimits()) -> Manifest:
    path = Path(pack_dir) / MANIFEST_NAME
    try:
        with path.open("rb") as f:
            raw = f.read(limits.manifest_max_bytes + 1)
    except FileNotFoundError:
        raise PackInvalid(f"{path} does not exist: a pack folder needs a {MANIFEST_NAME}") from None
    except OSError as e:
        raise PackInvalid(f"cannot read {path}: {e.strerror}") from None
    return parse_manifest(raw, limits)


def _shard(i: int, s: Any, limits: PackLimits) -> ShardEntry:
    if not isinstance(s, dict):
        raise PackInvalid(f"manifest shards[{i}] must be an object")
    name = check_filename(s.get("filename"), limits)
    cid = s.get("cid", "")
    if not isinstance(cid, str):
        raise PackInvalid(f"shard {name!r} cid must be a string", shard=name)
    digest = s.get("sha256")
    m = _SHA256.fullmatch(digest) if isinstance(digest, str) else None
    if m is None:
        raise PackInvalid(
            f"shard {name!r} sha256 {digest!r} must be 'sha256:' followed by 64 lowercase hex digits",
            shard=name,
        )
    size = s.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 8):
        raise PackInvalid(f"shard {name!r} size {size!r} must be an integer of at least 8", shard=name)
    return ShardEntry(filename=name, cid=cid, sha256_hex=m.group(1), size=size)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise PackInvalid(f"manifest has the key {k!r} twice")
        out[k] = v
    return out
