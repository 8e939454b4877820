"""Pydantic models of the ModelPack manifest (the seed's §3); they validate manifests and feed the OpenAPI document.

Unknown top-level keys are kept (``extra="allow"``); canonical bytes come from the original JSON, never
from a model dump, so validation cannot change a pack's identity.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_core.format.digest import SHA256_PATTERN, Sha256Digest
from model_core.format.evaluation import Evaluation
from model_core.format.fields import (
    FILENAME_MAX_LEN,
    FILENAME_PATTERN,
    check_profile,
    check_shard_cid,
    check_shard_filename,
)


class ShardSpec(BaseModel):
    """One safetensors shard: its file name in the pack folder, UnixFS CID and sha256."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    filename: str = Field(
        json_schema_extra={"pattern": FILENAME_PATTERN, "minLength": 1, "maxLength": FILENAME_MAX_LEN}
    )
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
        return check_shard_cid(v)

    @field_validator("unixfs")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        return check_profile(v)

    @property
    def digest(self) -> Sha256Digest:
        return Sha256Digest.parse(self.sha256)

    @property
    def sha256_hex(self) -> str:
        return self.digest.hex


class FileSpec(ShardSpec):
    """A file of the pack that is not a weight shard (config.json, tokenizer.json, README.md, a reference
    text...): the same fields as a shard; its name is unique across shards and files."""

    @field_validator("filename")
    @classmethod
    def _filename(cls, v: str) -> str:
        return check_shard_filename(v, what="file name")


LAYOUTS = ("seed", "hf-llama")


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
    files: list[FileSpec] | None = Field(None, description="the pack's other files (config, tokenizer...)")
    layout: Literal["seed", "hf-llama"] | None = Field(
        None, description="tensor names and config source: 'seed' (default) or 'hf-llama'"
    )
    evaluation: Evaluation | None = Field(None, description="behavioural checks the gate runs")

    @field_validator("unixfs")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        return check_profile(v)

    def profile_of(self, shard: ShardSpec) -> str | None:
        return shard.unixfs or self.unixfs


KNOWN_KEYS = frozenset(ManifestDoc.model_fields)
