"""Writes a ModelPack folder: sharded safetensors (tied weights stored once) and manifest.json.

Every file is written to a temporary name and renamed into place, the manifest last, so a reader never
sees a half-written pack. The CID of each shard comes from the caller (``cid_of``), because computing
UnixFS CIDs is the pinner's job and model_core must not import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from model_core.config import ModelConfig
from model_core.errors import ModelCoreError
from model_core.format.fields import MANIFEST_NAME

DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
_SHARD_NAME = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
SEED_MODEL_NAME = "ProductionTransformer-RAGE"
SEED_MODEL_VERSION = "1.1.0"


def plan_shards(state: Mapping[str, Tensor], max_shard_bytes: int) -> list[list[str]]:
    """Group keys in order into shards of at most ``max_shard_bytes`` (a bigger tensor gets its own)."""
    if max_shard_bytes <= 0:
        raise ModelCoreError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    groups: list[list[str]] = [[]]
    size = 0
    for key, t in state.items():
        nbytes = t.numel() * t.element_size()
        if groups[-1] and size + nbytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += nbytes
    return groups


def dedupe_tied(state: Mapping[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Keep one copy of tied weights under ``embed.weight``, as safetensors' ``save_model`` does."""
    out = dict(state)
    if cfg.tie_weights and "embed.weight" in out and "lm_head.weight" in out:
        if not torch.equal(out["embed.weight"], out["lm_head.weight"]):
            raise ModelCoreError("tie_weights is true but embed.weight and lm_head.weight differ")
        del out["lm_head.weight"]
    return out


def write_pack(
    state_dict: Mapping[str, Tensor],
    config: ModelConfig | Mapping[str, Any],
    out_dir: Path | str,
    *,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    cid_of: Callable[[Path], str],
    manifest_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``state_dict`` as a pack folder and return the manifest written to ``manifest.json``.

    ``manifest_extra`` adds or overrides top-level keys (model_name, model_version, tokenizer, license,
    provenance...); it may not replace format, config or shards.
    """
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(dict(config))[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in dedupe_tied(state_dict, cfg).items()}
    groups = plan_shards(state, max_shard_bytes)
    shards = []
    for i, keys in enumerate(groups, start=1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        path = out / name
        tmp = out / f".{name}.tmp-{os.getpid()}"
        try:
            save_file({k: state[k] for k in keys}, str(tmp), metadata={"format": "pt"})
            _fsync(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        shards.append(
            {"filename": name, "cid": cid_of(path), "sha256": _sha256(path), "size": path.stat().st_size}
        )
    manifest: dict[str, Any] = {
        "format": "safetensors",
        "model_name": SEED_MODEL_NAME,
        "model_version": SEED_MODEL_VERSION,
        "config": cfg.to_dict(),
        "shards": shards,
    }
    for key, value in (manifest_extra or {}).items():
        if key in ("format", "config", "shards"):
            raise ModelCoreError(f"manifest_extra may not set {key!r}")
        manifest[key] = value
    _write_atomic(out / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
    current = {s["filename"] for s in shards}
    for stale in out.glob("model-*-of-*.safetensors"):  # left by an earlier pack written here
        if _SHARD_NAME.fullmatch(stale.name) and stale.name not in current:
            stale.unlink()
    return manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
