"""A pack's layout and model config, wherever the layout keeps it; torch-free (the sandbox supervisor uses it).

``seed`` packs (the default when the manifest has no ``layout``) carry the core config in the manifest's
``config``. ``hf-llama`` packs carry Hugging Face's ``config.json`` as a pack file (listed under ``files``
with its sha256, which is checked before the bytes are trusted); their manifest ``config`` is the core
config derived from it (or empty) and must agree with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_core.config import ModelConfig
from model_core.errors import ConfigInvalid, PackInvalid, bounded, q
from model_core.format.digest import Sha256Digest
from model_core.format.hf_config import model_config_from_hf
from model_core.layouts import HF_LLAMA, SEED, check_layout
from model_core.manifest import Manifest
from model_core.preflight import resolve_shard

HF_CONFIG_NAME = "config.json"
HF_CONFIG_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PackConfig:
    layout: str
    config: ModelConfig
    ignored_keys: list[str]


def manifest_layout(manifest: Manifest) -> str:
    return check_layout(manifest.extra.get("layout", SEED))


def file_entry(manifest: Manifest, filename: str) -> dict[str, Any] | None:
    """The manifest's ``files`` entry for ``filename`` (None when it lists no such file)."""
    files = manifest.extra.get("files", [])
    if not isinstance(files, list):
        raise PackInvalid("manifest 'files' must be a list")
    for entry in files:
        if isinstance(entry, dict) and entry.get("filename") == filename:
            return entry
    return None


def pack_config(manifest: Manifest, pack_dir: Path, allowed_roots: tuple[Path, ...] = ()) -> PackConfig:
    """The layout and the validated core config of the pack in ``pack_dir``.

    Raises:
        PackInvalid: an unknown layout, or a config.json missing, unlisted, altered or unreadable.
        ConfigInvalid: a config the core cannot express (naming the file, field and value).
    """
    layout = manifest_layout(manifest)
    if layout == SEED:
        cfg, ignored = ModelConfig.from_dict(manifest.config)
        return PackConfig(layout, cfg, ignored)
    assert layout == HF_LLAMA
    data = read_hf_config(manifest, pack_dir, allowed_roots)
    cfg, ignored = model_config_from_hf(data, HF_CONFIG_NAME)
    if manifest.config and manifest.config != cfg.to_dict():
        differing = sorted(
            k
            for k in set(manifest.config) | set(cfg.to_dict())
            if manifest.config.get(k) != cfg.to_dict().get(k)
        )
        raise ConfigInvalid(
            f"manifest config disagrees with {HF_CONFIG_NAME} on {', '.join(differing[:5])}; "
            "an hf-llama pack's config comes from config.json (leave the manifest config empty or derived)",
            field=differing[0],
        )
    return PackConfig(layout, cfg, ignored)


def read_hf_config(manifest: Manifest, pack_dir: Path, allowed_roots: tuple[Path, ...] = ()) -> Any:
    """config.json's JSON, after checking its size and sha256 against the manifest's ``files`` entry."""
    entry = file_entry(manifest, HF_CONFIG_NAME)
    if entry is None:
        raise PackInvalid(
            f"an {HF_LLAMA} pack must list {HF_CONFIG_NAME} under the manifest's 'files'",
            shard=HF_CONFIG_NAME,
        )
    try:
        digest = Sha256Digest.parse(entry.get("sha256"))
    except ValueError:
        raise PackInvalid(
            f"manifest files entry {HF_CONFIG_NAME!r} sha256 {q(entry.get('sha256'))} is not 'sha256:<64 hex>'",
            shard=HF_CONFIG_NAME,
        ) from None
    path, size = resolve_shard(pack_dir, HF_CONFIG_NAME, allowed_roots)
    if size > HF_CONFIG_MAX_BYTES:
        raise PackInvalid(
            f"{HF_CONFIG_NAME} is {size} bytes, more than the limit of {HF_CONFIG_MAX_BYTES}",
            shard=HF_CONFIG_NAME,
        )
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        raw = f.read(HF_CONFIG_MAX_BYTES + 1)
    if not hmac.compare_digest(hashlib.sha256(raw).hexdigest(), digest.hex):
        raise PackInvalid(
            f"{HF_CONFIG_NAME} does not match the sha256 in the manifest's files (corrupted or tampered)",
            shard=HF_CONFIG_NAME,
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise PackInvalid(f"{HF_CONFIG_NAME} is not valid JSON: {bounded(e)}", shard=HF_CONFIG_NAME) from None
