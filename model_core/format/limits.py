"""A manifest's budgets, in a module of their own: the sandbox's supervisor and worker read manifests
through ``model_core.manifest`` and import this, not the full format (pydantic, multiformats), on the path
before the worker's ``import torch``."""

from __future__ import annotations

from dataclasses import dataclass

from model_core.format.fields import FILENAME_MAX_LEN

MANIFEST_MAX_BYTES = 1024 * 1024
MAX_SHARDS = 4096
MAX_FILES = 1024


@dataclass(frozen=True, slots=True)
class ManifestLimits:
    """Budgets a hostile manifest could probe (the registry fills them from ``settings.limits``)."""

    manifest_max_bytes: int = MANIFEST_MAX_BYTES
    max_shards: int = MAX_SHARDS
    max_files: int = MAX_FILES
    filename_max_len: int = FILENAME_MAX_LEN
    string_max_len: int = 4096
    json_max_depth: int = 32
    pack_max_bytes: int = 1024**4
