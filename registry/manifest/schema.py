"""Pydantic models of the seed's ModelPack manifest (§3); they validate publishes and feed the OpenAPI document.

Unknown top-level keys are kept (``extra="allow"``); canonical bytes come from the original JSON, never
from a model dump, so validation cannot change a pack's identity.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pinner.content_errors import InvalidCid
from pinner.digests import parse_cid
from pinner.unixfs import PROFILES

SHA256_PATTERN = r"^sha256:[0-9a-f]{64}$"
FILENAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
_FILENAME = re.compile(FILENAME_PATTERN)
_SHA256 = re.compile(SHA256_PATTERN)


def check_shard_filename(name: str, max_len: int = 255) -> str:
    """One plain file name: ``[A-Za-z0-9._-]``, no separators, not ``.``/``..``, no leading dot."""
    if not name:
        raise ValueError("shard filename is empty")
    if len(name) > max_len:
        raise ValueError(f"shard filename {name[:40]!r}... is longer than {max_len} characters")
    if not _FILENAME.fullmatch(name):
        raise ValueError(
            f"shard filename {name!r} is not allowed: use only letters, digits, '.', '_' and '-', "
            "no path separators and no leading '.'"
        )
    return name


def check_profile(profile: str | None) -> str | None:
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown unixfs profile {profile!r}; known: {', '.join(PROFILES)}")
    return profile


class ShardSpec(BaseModel):
    """One safetensors shard: its file name in the pack folder, UnixFS CID and sha256."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    filename: str = Field(json_schema_extra={"pattern": FILENAME_PATTERN, "minLength": 1, "maxLength": 255})
    cid: str = Field(
        min_length=1, max_length=128, description="UnixFS root CID (v0: Kubo defaults, v1: raw leaves)"
    )
    sha256: str = Field(pattern=SHA256_PATTERN, description="sha256:<64 lowercase hex>")
    size: int | None = Field(None, ge=0, description="bytes; filled in by the registry when absent")
    unixfs: str | None = Field(
        None, description="UnixFS profile the CID was built with (overrides the pack's)"
    )

    @field_validator("filename")
    @classmethod
    def _filename(cls, v: str) -> str:
        return check_shard_filename(v)

    @field_validator("cid")
    @classmethod
    def _cid(cls, v: str) -> str:
        try:
            parse_cid(v)
        except InvalidCid as e:
            raise ValueError(e.message) from None
        return v

    @field_validator("unixfs")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        return check_profile(v)

    @property
    def sha256_hex(self) -> str:
        return self.sha256.removeprefix("sha256:")


class Provenance(BaseModel):
    """Who built the pack and from what; signatures live here too (see registry.trust.signatures)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    build_ts: str | None = None
    git_commit: str | None = None
    signature: str | None = None
    signatures: list[dict[str, Any]] | None = None


class ManifestDoc(BaseModel):
    """A ModelPack manifest: the identity of one model version is the CID of its canonical bytes."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    format: Literal["safetensors"]
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1, max_length=128)
    config: dict[str, Any]
    shards: list[ShardSpec] = Field(min_length=1)
    tokenizer: dict[str, Any] | str | None = None
    license: str | None = None
    provenance: Provenance | None = None
    unixfs: str | None = Field(None, description="UnixFS profile of every shard, e.g. unixfs-v1-2025")

    @field_validator("unixfs")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        return check_profile(v)

    def profile_of(self, shard: ShardSpec) -> str | None:
        return shard.unixfs or self.unixfs


KNOWN_KEYS = frozenset(ManifestDoc.model_fields)
