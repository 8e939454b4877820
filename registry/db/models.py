"""The index schema: every table of the domain (DESIGN.md), with named constraints and lookup indexes.

Identity of content is its CID string (CIDv1 base32 for packs; shards keep the CID the manifest states).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from pinner.states import NodeKind, NodeState, ReplicaState
from registry.db.base import Base, BytewiseLower, UTCDateTime, str_enum, utcnow

CID_LEN = 128
NAME_LEN = 128


class SignatureVerdict(enum.StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN_KEY = "unknown_key"
    REVOKED = "revoked"


def _now_col() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


# --------------------------------------------------------------------------- publishers & auth


class Publisher(Base):
    __tablename__ = "publishers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False, unique=True)
    created_at: Mapped[datetime] = _now_col()


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id", ondelete="CASCADE"), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)  # sha256 hex
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)  # shown in listings
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False)  # ["publish"] | ["admin", ...]
    namespaces: Mapped[list[str] | None] = mapped_column(JSON)  # None: every namespace of the publisher
    description: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = _now_col()
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (Index(None, "publisher_id"),)


class Namespace(Base):
    __tablename__ = "namespaces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False, unique=True)
    required_signatures: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    max_drift: Mapped[dict[str, float] | None] = mapped_column(JSON)  # registry/trust/drift_limits.py
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (CheckConstraint("required_signatures >= 0", name="required_signatures_nonneg"),)


# Namespaces and models are unique case-blind, as on the Hugging Face Hub (registry.db.naming; migration 0009).
Index("uq_namespaces_name_key", func.lower(Namespace.name), unique=True)


class NamespaceMember(Base):
    """Publishers allowed to publish and move pointers in a namespace."""

    __tablename__ = "namespace_members"
    namespace_id: Mapped[int] = mapped_column(
        ForeignKey("namespaces.id", ondelete="CASCADE"), primary_key=True
    )
    publisher_id: Mapped[int] = mapped_column(
        ForeignKey("publishers.id", ondelete="CASCADE"), primary_key=True
    )
    __table_args__ = (Index(None, "publisher_id"),)


# --------------------------------------------------------------------------- keys & trust


class SigningKey(Base):
    __tablename__ = "signing_keys"
    key_id: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)  # stable fingerprint
    publisher_id: Mapped[int | None] = mapped_column(ForeignKey("publishers.id", ondelete="SET NULL"))
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False, default="ed25519")
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    registered_at: Mapped[datetime] = _now_col()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revocation_reason: Mapped[str | None] = mapped_column(Text)  # up to trust.max_reason_len
    __table_args__ = (Index(None, "publisher_id"),)


class TrustedKey(Base):
    """Trust policy: a key (or every key of a publisher) a namespace trusts for curation."""

    __tablename__ = "trusted_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"), nullable=False)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("signing_keys.key_id", ondelete="CASCADE"))
    publisher_id: Mapped[int | None] = mapped_column(ForeignKey("publishers.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (
        CheckConstraint("(key_id IS NULL) <> (publisher_id IS NULL)", name="exactly_one_of_key_or_publisher"),
        UniqueConstraint("namespace_id", "key_id"),
        UniqueConstraint("namespace_id", "publisher_id"),
    )


class AuditEvent(Base):
    """Append-only record of policy changes, manual curation and other privileged acts."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = _now_col()
    actor: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(String(512), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    __table_args__ = (Index(None, "subject", "at"), Index(None, "action", "at"))


# --------------------------------------------------------------------------- models, packs, shards


class Model(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    replication_min: Mapped[int | None] = mapped_column(Integer)
    replication_max: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (
        UniqueConstraint("namespace_id", "name"),
        Index(None, "name"),  # search by name prefix
        CheckConstraint(
            "replication_min IS NULL OR replication_max IS NULL OR replication_min <= replication_max",
            name="replication_min_le_max",
        ),
    )


Index("uq_models_name_key", Model.namespace_id, func.lower(Model.name), unique=True)
# The model list's name-prefix search scans this range (migration 0011; registry.packs.browse_reads).
Index("ix_models_name_bytes", BytewiseLower(Model.name))


class Shard(Base):
    __tablename__ = "shards"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack_cid: Mapped[str] = mapped_column(ForeignKey("manifests.cid", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    cid: Mapped[str] = mapped_column(String(CID_LEN), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)  # lowercase hex
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    unixfs_profile: Mapped[str | None] = mapped_column(String(32))
    # 'shard': a weight shard (manifest ``shards``); 'file': another file (``files``), positions after the shards
    role: Mapped[str] = mapped_column(String(8), default="shard", server_default="shard", nullable=False)
    __table_args__ = (
        UniqueConstraint("pack_cid", "position"),
        UniqueConstraint("pack_cid", "filename"),
        Index(None, "cid"),
        CheckConstraint("size >= 0", name="size_nonneg"),
        CheckConstraint("length(sha256) = 64", name="sha256_hex_len"),
        CheckConstraint("role IN ('shard', 'file')", name="role_known"),
    )


class Blob(Base):
    """A file whose bytes the embedded blockstore holds, verified (root CID + sha256)."""

    __tablename__ = "blobs"
    cid: Mapped[str] = mapped_column(String(CID_LEN), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    unixfs_profile: Mapped[str | None] = mapped_column(String(32))
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("publishers.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (Index(None, "sha256"),)


class Signature(Base):
    __tablename__ = "signatures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack_cid: Mapped[str] = mapped_column(ForeignKey("manifests.cid", ondelete="CASCADE"), nullable=False)
    key_id: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # inline | detached | dsse
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    signature: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    envelope: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # DSSE envelope, when kind = dsse
    verdict: Mapped[SignatureVerdict] = mapped_column(
        str_enum(SignatureVerdict, "signature_verdict"), nullable=False
    )
    verdict_reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = _now_col()  # the registry's receipt time: the signing-time bound
    __table_args__ = (UniqueConstraint("pack_cid", "key_id", "kind"), Index(None, "key_id"))


# --------------------------------------------------------------------------- pointers & IPNS


class Pointer(Base):
    __tablename__ = "pointers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), nullable=False)
    tag: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    pack_cid: Mapped[str] = mapped_column(String(CID_LEN), nullable=False)  # a listing of this model
    updated_at: Mapped[datetime] = _now_col()
    updated_by: Mapped[str | None] = mapped_column(String(NAME_LEN))
    __table_args__ = (
        UniqueConstraint("model_id", "tag"),
        Index(None, "pack_cid"),
        ForeignKeyConstraint(["model_id", "pack_cid"], ["packs.model_id", "packs.cid"], ondelete="RESTRICT"),
    )


class PointerChange(Base):
    __tablename__ = "pointer_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), nullable=False)
    tag: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    from_cid: Mapped[str | None] = mapped_column(String(CID_LEN))
    to_cid: Mapped[str | None] = mapped_column(String(CID_LEN))
    actor: Mapped[str | None] = mapped_column(String(NAME_LEN))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = _now_col()
    __table_args__ = (Index(None, "model_id", "tag", "at"), Index(None, "to_cid"), Index(None, "from_cid"))


class IpnsKey(Base):
    """A channel's IPNS key (one per pointer), its private half sealed with the settings' key."""

    __tablename__ = "ipns_keys"
    name: Mapped[str] = mapped_column(String(CID_LEN), primary_key=True)  # k51... IPNS name
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), nullable=False)
    tag: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (UniqueConstraint("model_id", "tag"),)


class IpnsRecord(Base):
    __tablename__ = "ipns_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(ForeignKey("ipns_keys.name", ondelete="CASCADE"), nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)
    value: Mapped[str] = mapped_column(String(512), nullable=False)
    record: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    validity: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)  # EOL
    created_at: Mapped[datetime] = _now_col()
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("name", "sequence"),
        Index(None, "validity"),
        CheckConstraint("sequence >= 0", name="sequence_nonneg"),
    )


# --------------------------------------------------------------------------- nodes & replicas


class IpfsNode(Base):
    __tablename__ = "ipfs_nodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False, unique=True)
    kind: Mapped[NodeKind] = mapped_column(str_enum(NodeKind, "node_kind"), nullable=False)
    url: Mapped[str] = mapped_column(String(1024), nullable=False)
    auth: Mapped[bytes | None] = mapped_column(LargeBinary)  # sealed credentials
    tags: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    state: Mapped[NodeState] = mapped_column(str_enum(NodeState, "node_state"), nullable=False)
    draining: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    version: Mapped[str | None] = mapped_column(String(128))
    peer_id: Mapped[str | None] = mapped_column(String(128))
    free_space: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_col()
    __table_args__ = (UniqueConstraint("url"), Index(None, "state"))


class Replica(Base):
    """One piece of content (shard file or manifest) on one node."""

    __tablename__ = "replicas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cid: Mapped[str] = mapped_column(String(CID_LEN), nullable=False)
    node_id: Mapped[int] = mapped_column(ForeignKey("ipfs_nodes.id", ondelete="CASCADE"), nullable=False)
    state: Mapped[ReplicaState] = mapped_column(str_enum(ReplicaState, "replica_state"), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    bytes_moved: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    pinned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_audit_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("cid", "node_id"),
        Index(None, "node_id", "state"),
        Index(None, "state", "updated_at"),
        CheckConstraint("attempts >= 0", name="attempts_nonneg"),
    )


# --------------------------------------------------------------------------- validation


class ValidationReport(Base):
    __tablename__ = "validation_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pack_cid: Mapped[str] = mapped_column(ForeignKey("manifests.cid", ondelete="CASCADE"), nullable=False)
    verdict: Mapped[str] = mapped_column(String(32), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    started_at: Mapped[datetime] = _now_col()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (Index(None, "pack_cid", "started_at"),)


# The Pinning Service API's pins (registry/db/pins.py) and the event outbox (registry/db/events.py) are
# registered on the same metadata.
from registry.db.events import Event  # noqa: E402, F401
from registry.db.pack_tables import (  # noqa: E402, F401
    BlobUploader,
    Manifest,
    Pack,
    PackState,
    PackStateChange,
)
from registry.db.pins import Pin, PinStatus  # noqa: E402, F401
from registry.db.webhooks import WebhookDelivery, WebhookEndpoint  # noqa: E402, F401
