"""The loader's view of a ModelPack manifest, built from the one format definition (``model_core.format``).

Torch-free: the sandbox supervisor reads manifests before it spends a child process on them. The JSON is
decoded by the format's strict parser, shard file names follow the format's safe-filename rule and
digests are the format's ``Sha256Digest``. CIDs are carried but not checked here (the loader re-hashes
sha256 from the bytes it maps; CIDs are the registry's to verify). Every failure is PackInvalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_core.errors import PackInvalid
from model_core.format.digest import Sha256Digest
from model_core.format.errors import InvalidManifest
from model_core.format.fields import FILENAME_MAX_LEN, MANIFEST_NAME, check_shard_filename
from model_core.format.limits import MANIFEST_MAX_BYTES, MAX_SHARDS, ManifestLimits
from model_core.format.strict_json import parse_json_strict

_KNOWN = frozenset(
    ("format", "config", "shards", "model_name", "model_version", "tokenizer", "license", "provenance")
)


@dataclass(frozen=True)
class PackLimits:
    """Budgets an attacker could probe with a hostile pack."""

    manifest_max_bytes: int = MANIFEST_MAX_BYTES
    max_shards: int = MAX_SHARDS
    filename_max_len: int = FILENAME_MAX_LEN
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


def parse_manifest(raw: bytes, limits: PackLimits = PackLimits()) -> Manifest:
    """Parse and validate manifest bytes; unknown top-level keys are kept in ``extra``.

    Raises:
        PackInvalid: naming the bad key or value.
    """
    try:
        data = parse_json_strict(
            raw, max_bytes=limits.manifest_max_bytes, max_depth=ManifestLimits().json_max_depth
        )
    except InvalidManifest as e:
        raise PackInvalid(e.message) from None
    if not isinstance(data, dict):
        raise PackInvalid("manifest must be a JSON object")
    fmt = data.get("format")
    if fmt != "safetensors":
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
    return Manifest(
        format="safetensors",
        config=config,
        shards=shards,
        model_name=data.get("model_name", "ProductionTransformer-RAGE"),
        model_version=data.get("model_version", ""),
        tokenizer=data.get("tokenizer"),
        license=data.get("license"),
        provenance=data.get("provenance"),
        extra={k: v for k, v in data.items() if k not in _KNOWN},
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
    raw_name = s.get("filename")
    try:
        name = check_shard_filename(raw_name, limits.filename_max_len)
    except ValueError as e:
        raise PackInvalid(str(e), shard=raw_name if isinstance(raw_name, str) else None) from None
    cid = s.get("cid", "")
    if not isinstance(cid, str):
        raise PackInvalid(f"shard {name!r} cid must be a string", shard=name)
    try:
        digest = Sha256Digest.parse(s.get("sha256"))
    except ValueError:
        raise PackInvalid(
            f"shard {name!r} sha256 {s.get('sha256')!r} must be 'sha256:' followed by 64 lowercase hex digits",
            shard=name,
        ) from None
    size = s.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 8):
        raise PackInvalid(f"shard {name!r} size {size!r} must be an integer of at least 8", shard=name)
    return ShardEntry(filename=name, cid=cid, sha256_hex=digest.hex, size=size)
