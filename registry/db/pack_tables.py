"""The pack tables: content (``manifests``, one row per CID) and listings (``packs``, one per model that
published the CID) with the listing's state history; on the index's metadata (re-exported by
``registry.db.models``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
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
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.db.base import Base, UTCDateTime, str_enum, utcnow

CID_LEN = 128  # as registry.db.models.CID_LEN
NAME_LEN = 128  # as registry.db.models.NAME_LEN


def _now_col() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class PackState(enum.StrEnum):
    RECEIVED = "received"
    AVAILABLE = "available"
    VALIDATED = "validated"
    CURATED = "curated"
    REJECTED = "rejected"


class Manifest(Base):
    """A pack's content: the manifest's canonical bytes and what depends only on them.

    Shared by every listing of the same CID (``packs``); shards, signatures and validation reports hang
    off the content, state, pointers and curation off the listing.
    """

    __tablename__ = "manifests"
    cid: Mapped[str] = mapped_column(String(CID_LEN), primary_key=True)
    manifest: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # RFC 8785 canonical bytes
    total_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    shard_count: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = _now_col()
    # whether the replicate job last found every unit at its target (None: never judged yet)
    replicated: Mapped[bool | None] = mapped_column(Boolean)
    __table_args__ = (
        CheckConstraint("total_size >= 0", name="total_size_nonneg"),
        CheckConstraint("shard_count >= 1", name="shard_count_positive"),
    )


class Pack(Base):
    """One listing of a ModelPack version: its content (``cid``) published as one model, with its own state.

    The same CID may be listed under several models (a bare-named manifest publishes as any ``ns/name``),
    each with its own state, pointers and curation; ``(model_id, cid)`` is unique.
    """

    __tablename__ = "packs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cid: Mapped[str] = mapped_column(ForeignKey("manifests.cid", ondelete="CASCADE"), nullable=False)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), nullable=False)
    model_version: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    state: Mapped[PackState] = mapped_column(str_enum(PackState, "pack_state"), nullable=False)
    state_reason: Mapped[str | None] = mapped_column(Text)
    flagged: Mapped[str | None] = mapped_column(Text)  # why a curated pack is no longer fit
    published_by: Mapped[int | None] = mapped_column(ForeignKey("publishers.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now_col()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    # always loaded with the listing (one inner join), so async code never lazy-loads it
    content: Mapped[Manifest] = relationship(lazy="joined", innerjoin=True)
    __table_args__ = (
        UniqueConstraint("model_id", "cid"),
        Index(None, "cid"),
        Index(None, "model_id", "created_at"),
        Index(None, "state", "updated_at"),
    )

    def __init__(
        self,
        *,
        manifest: bytes | None = None,
        total_size: int | None = None,
        shard_count: int | None = None,
        **kw: Any,
    ) -> None:
        """A listing; given ``manifest``/``total_size``/``shard_count`` (and no ``content``) it brings new content."""
        if "content" not in kw and manifest is not None:
            kw["content"] = Manifest(
                cid=kw["cid"],
                manifest=manifest,
                total_size=total_size if total_size is not None else 0,
                shard_count=shard_count if shard_count is not None else 1,
                **({"created_at": kw["created_at"]} if "created_at" in kw else {}),
            )
        super().__init__(**kw)

    @property
    def manifest(self) -> bytes:
        return self.content.manifest

    @property
    def total_size(self) -> int:
        return self.content.total_size

    @property
    def shard_count(self) -> int:
        return self.content.shard_count


class BlobUploader(Base):
    """A publisher who uploaded (so holds) the bytes of a blob; the first one is also ``blobs.uploaded_by``.

    Bytes no pack references yet may be referenced by a publish only of a publisher who uploaded them
    (or a global admin); reading them stays the first uploader's (``BlobService.readable_by``).
    """

    __tablename__ = "blob_uploaders"
    cid: Mapped[str] = mapped_column(ForeignKey("blobs.cid", ondelete="CASCADE"), primary_key=True)
    publisher_id: Mapped[int] = mapped_column(
        ForeignKey("publishers.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = _now_col()


class PackStateChange(Base):
    __tablename__ = "pack_state_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(Integer, nullable=False)  # with pack_cid: the listing
    pack_cid: Mapped[str] = mapped_column(String(CID_LEN), nullable=False)
    from_state: Mapped[PackState | None] = mapped_column(str_enum(PackState, "pack_state_from"))
    to_state: Mapped[PackState] = mapped_column(str_enum(PackState, "pack_state_to"), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(NAME_LEN))
    at: Mapped[datetime] = _now_col()
    __table_args__ = (
        ForeignKeyConstraint(["model_id", "pack_cid"], ["packs.model_id", "packs.cid"], ondelete="CASCADE"),
        Index(None, "pack_cid", "at"),
    )
