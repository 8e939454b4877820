"""Request and response bodies of the registry API as pydantic models: handlers serialize through them and
the OpenAPI document (registry.api.openapi) is generated from the same classes, so the two cannot drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from model_core.format.digest import SHA256_PATTERN
from model_core.format.fields import FILENAME_MAX_LEN, FILENAME_PATTERN, UNIXFS_PROFILES
from model_core.format.pack import ManifestLimits
from model_core.format.schema import KNOWN_KEYS, LAYOUTS
from registry.api import formats
from registry.api.keys import REGISTRY


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
    """Body of a publish: the manifest, optional detached signatures, an optional extra tag to move.

    The handler reads the body as strict JSON, checks the manifest with the manifest loader, then the rest
    through this model; the document states the loader's rules for the manifest (``refine_schema``).
    """

    model_config = ConfigDict(extra="forbid")
    manifest: dict[str, Any]
    signatures: list[Any] | None = None
    tag: str | None = Field(None, max_length=64, description="also move this pointer (latest always moves)")
    reason: str | None = Field(None, max_length=1024)

    @classmethod
    def refine_schema(cls, app: web.Application, defs: dict[str, Any]) -> None:
        svc = app[REGISTRY]
        props = defs[cls.__name__]["properties"]
        props["manifest"] = manifest_schema(svc.limits)
        sig = {"type": "array", "items": {"$ref": REF.format(model="DetachedSignature")}}
        props["signatures"] = _optional(sig | {"maxItems": svc.publish.max_detached})
        props["tag"] = _optional({"type": "string", "pattern": formats.TAG})
        defs["JsonValue"] = json_value_schema(svc.limits.string_max_len)
        defs["DetachedSignature"] = DetachedSignature.model_json_schema(ref_template=REF)


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
    id: int
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
    role: Literal["shard", "file"] = Field("shard", description="a weight shard, or another file of the pack")


class ValidationOut(_Out):
    verdict: str
    reason: str | None
    started_at: datetime
    finished_at: datetime | None


class PackStateOut(PackSummaryOut):
    """The pack detail's fields that the listing's life changes (read on every request)."""

    state_reason: str | None
    history: list[StateChangeOut] = Field(description="the newest state changes, oldest first")
    history_next_cursor: str | None = Field(
        description="when older changes exist: the cursor for GET /v1/packs/{cid}/history"
    )
    signatures: list[SignatureOut]
    replicas: dict[str, int] = Field(description="replica count per state over the pack's shards")
    validation: ValidationOut | None
    pointers: list[str] = Field(description="tags of this model that point at this pack")


class PackContentOut(_Out):
    """The pack detail's fields that depend on the CID alone (rendered once per CID)."""

    manifest: dict[str, Any]
    shards: list[ShardOut]
    files: list[ShardOut] = Field(
        default_factory=list, description="the manifest's other files (config.json, tokenizer.json...)"
    )


class PackOut(PackContentOut, PackStateOut):
    """The pack detail: the listing's state, then its content (the JSON's fields come in this order)."""


class StateHistoryPage(_Out):
    items: list[StateChangeOut]
    next_cursor: str | None


class PointerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cid: str = Field(min_length=1, max_length=128, json_schema_extra={"pattern": formats.CID})
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
    publisher: str = Field(min_length=1, max_length=64, json_schema_extra={"pattern": formats.PLAIN_NAME})
    namespaces: list[str] | None = Field(
        None, max_length=64, json_schema_extra={"items": {"type": "string", "pattern": formats.NAME}}
    )
    scopes: list[Literal["read", "publish", "admin", "pin"]] = Field(["publish"], min_length=1)
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
    next_cursor: str | None = None


class WhoAmI(_Out):
    publisher: str
    token_id: int
    scopes: list[str]
    namespaces: list[str] | None


REF = "#/components/schemas/{model}"
_JSON = {"$ref": REF.format(model="JsonValue")}
SAFE_INT = 2**53 - 1  # RFC 8785 (canonical JSON) numbers


def json_value_schema(max_len: int) -> dict[str, Any]:
    """Any JSON value the canonical form takes: numbers within +-(2^53 - 1), strings of at most ``max_len``."""
    return {
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number", "minimum": -SAFE_INT, "maximum": SAFE_INT},
            {"type": "string", "maxLength": max_len},
            {"type": "array", "items": _JSON},
            _object(max_len),
        ]
    }


def _object(max_len: int, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": _JSON, "propertyNames": {"maxLength": max_len}} | extra


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _collisions() -> str:
    """Top-level keys that differ from a manifest field only in case, '_' or '-' (the loader refuses them)."""
    spelled = [
        "".join(f"[{c.lower()}{c.upper()}][_-]*" for c in key.replace("_", "")) for key in sorted(KNOWN_KEYS)
    ]
    exact = "|".join(sorted(KNOWN_KEYS))
    return rf"^(?!(?:{exact})$)[_-]*(?:{'|'.join(spelled)})$"


def manifest_schema(limits: ManifestLimits) -> dict[str, Any]:
    """The manifest as the loader checks it under ``limits`` (a shard filename may appear once per pack,
    and the shard sizes may add up to at most ``pack_max_bytes``: rules across fields that JSON Schema
    cannot state)."""
    n = limits.string_max_len
    text = {"type": "string", "maxLength": n}
    profile = _optional({"enum": list(UNIXFS_PROFILES)})
    shard = _object(
        n,
        required=["filename", "cid", "sha256"],
        properties={
            "filename": {
                "type": "string",
                "pattern": FILENAME_PATTERN,
                "minLength": 1,
                "maxLength": min(limits.filename_max_len, FILENAME_MAX_LEN, n),
            },
            "cid": {"type": "string", "pattern": formats.CID, "description": "sha2-256 over raw or dag-pb"},
            "sha256": {"type": "string", "pattern": SHA256_PATTERN},
            "size": _optional(
                {"type": "integer", "minimum": 0, "maximum": min(limits.pack_max_bytes, SAFE_INT)}
            ),
            "unixfs": profile,
        },
    )
    provenance = _object(
        n,
        properties={
            "build_ts": _optional(text),
            "git_commit": _optional(text),
            "signature": _optional(text),
            "signatures": _optional({"type": "array", "items": _object(n)}),
        },
    )
    return _object(
        n,
        required=["format", "model_name", "model_version", "config", "shards"],
        properties={
            "format": {"enum": ["safetensors"]},
            "model_name": {"type": "string", "minLength": 1, "maxLength": n},
            "model_version": {"type": "string", "minLength": 1, "maxLength": min(128, n)},
            "config": _object(n),
            "shards": {"type": "array", "minItems": 1, "maxItems": limits.max_shards, "items": shard},
            "tokenizer": {"anyOf": [_object(n), text, {"type": "null"}]},
            "license": _optional(text),
            "provenance": _optional(provenance),
            "unixfs": profile,
            "files": _optional({"type": "array", "maxItems": limits.max_files, "items": shard}),
            "layout": _optional({"enum": list(LAYOUTS)}),
        },
        propertyNames={"maxLength": n, "not": {"pattern": _collisions()}},
    )
