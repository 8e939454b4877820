"""Request and response bodies of the registry API as pydantic models: handlers serialize through them and
the OpenAPI document (registry.api.openapi) is generated from the same classes, so the two cannot drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from registry.manifest.schema import ManifestDoc


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorDetail(_Out):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(_Out):
    error: ErrorDetail


class BlobOut(_Out):
    cid: str
    sha256: str = Field(description="sha256:<64 lowercase hex>")
    size: int
    unixfs_profile: str | None = None


class DetachedSignature(BaseModel):
    model_config = ConfigDict(extra="allow")
    key_id: str
    algorithm: str = "ed25519"
    signature: str = Field(description="base64 Ed25519 signature over the manifest's signing payload")


class PublishIn(BaseModel):
    """Body of a publish: the manifest, optional detached signatures, an optional extra tag to move."""

    model_config = ConfigDict(extra="forbid")
    manifest: ManifestDoc
    signatures: list[DetachedSignature] = Field(default_factory=list, max_length=16)
    tag: str | None = Field(None, description="also move this pointer (latest always moves)")
    reason: str | None = Field(None, max_length=1024)


class SignatureOut(_Out):
    key_id: str
    kind: str
    verdict: Literal["valid", "invalid", "unknown_key", "revoked"]
    reason: str | None = None
    received_at: datetime | None = None


class PublishOut(_Out):
    cid: str
    created: bool = Field(description="false when this manifest was already published (nothing changed)")
    state: str
    namespace: str
    model: str
    model_version: str
    pointers: dict[str, str]
    signatures: list[SignatureOut]


class ModelOut(_Out):
    namespace: str
    name: str
    created_at: datetime


class ModelPage(_Out):
    items: list[ModelOut]
    next_cursor: str | None


class PackSummaryOut(_Out):
    cid: str
    namespace: str
    model: str
    model_version: str
    state: str
    total_size: int
    shard_count: int
    created_at: datetime


class PackPage(_Out):
    items: list[PackSummaryOut]
    next_cursor: str | None


class StateChangeOut(_Out):
    from_: str | None = Field(alias="from")
    to: str
    reason: str | None
    actor: str | None
    at: datetime

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)


class ShardOut(_Out):
    position: int
    filename: str
    cid: str
    sha256: str = Field(description="sha256:<64 lowercase hex>")
    size: int
    unixfs_profile: str | None


class ValidationOut(_Out):
    verdict: str
    reason: str | None
    started_at: datetime
    finished_at: datetime | None


class PackOut(PackSummaryOut):
    state_reason: str | None
    manifest: dict[str, Any]
    history: list[StateChangeOut]
    shards: list[ShardOut]
    signatures: list[SignatureOut]
    replicas: dict[str, int] = Field(description="replica count per state over the pack's shards")
    validation: ValidationOut | None
    pointers: list[str] = Field(description="tags of this model that point at this pack")


class PointerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cid: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(None, max_length=1024)


class PointerOut(_Out):
    namespace: str
    model: str
    tag: str
    cid: str
    updated_at: datetime
    updated_by: str | None


class PointerList(_Out):
    items: list[PointerOut]


class PointerChangeOut(_Out):
    id: int
    tag: str
    from_cid: str | None
    to_cid: str | None
    actor: str | None
    reason: str | None
    at: datetime


class PointerHistoryPage(_Out):
    items: list[PointerChangeOut]
    next_cursor: str | None


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    publisher: str = Field(min_length=1, max_length=64)
    namespaces: list[str] | None = Field(None, max_length=64)
    scopes: list[Literal["publish", "admin"]] = Field(["publish"], min_length=1)
    description: str | None = Field(None, max_length=256)


class TokenOut(_Out):
    id: int
    prefix: str
    publisher: str
    scopes: list[str]
    namespaces: list[str] | None
    description: str | None = None
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown this once, stored only as its sha256")


class TokenList(_Out):
    items: list[TokenOut]


class WhoAmI(_Out):
    publisher: str
    token_id: int
    scopes: list[str]
    namespaces: list[str] | None
