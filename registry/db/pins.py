"""The Pinning Service API's table: one row per pin request (registry.pinning), on the index's metadata."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from registry.db.base import Base, UTCDateTime, str_enum, utcnow

CID_LEN = 128  # as registry.db.models.CID_LEN


def _now_col() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class PinStatus(enum.StrEnum):
    """The Pinning Service API's status vocabulary."""

    QUEUED = "queued"
    PINNING = "pinning"
    PINNED = "pinned"
    FAILED = "failed"


class Pin(Base):
    """One pin request of the Pinning Service API: a replication unit of its own, owned by a publisher.

    A deleted pin keeps its row (deleted_at set) until its CID is unpinned from every node nothing
    else needs it on; `replaces` names the request this one supersedes once it is pinned.
    """

    __tablename__ = "pins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requestid: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publishers.id", ondelete="CASCADE"), nullable=False)
    cid: Mapped[str] = mapped_column(String(CID_LEN), nullable=False)  # as the client sent it
    cid_key: Mapped[str] = mapped_column(String(CID_LEN), nullable=False)  # normalized: replicas, filters
    name: Mapped[str | None] = mapped_column(String(255))
    origins: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    meta: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    status: Mapped[PinStatus] = mapped_column(str_enum(PinStatus, "pin_status"), nullable=False)
    info: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    size: Mapped[int | None] = mapped_column(BigInteger)  # bytes, once known (quota)
    replication_min: Mapped[int | None] = mapped_column(Integer)
    replication_max: Mapped[int | None] = mapped_column(Integer)
    replaces: Mapped[str | None] = mapped_column(String(64))  # requestid superseded once this is pinned
    created: Mapped[datetime] = _now_col()
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    pinned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        Index(None, "publisher_id", "status", "created"),
        Index(None, "publisher_id", "name"),
        Index(None, "cid_key"),
        Index(None, "status", "updated_at"),
        Index(None, "created"),
        Index(None, "replaces"),
        CheckConstraint("size IS NULL OR size >= 0", name="size_nonneg"),
        CheckConstraint(
            "replication_min IS NULL OR replication_max IS NULL OR replication_min <= replication_max",
            name="replication_min_le_max",
        ),
    )


class PinUsage(Base):
    """What a publisher's live pins (``deleted_at`` unset) hold: their count and known bytes (the quotas).

    Kept by triggers on ``pins`` (migration 0010) in the transaction of every insert, delete or change of
    ``deleted_at``/``size``, whatever code writes it; reading it is one primary-key lookup, where counting the
    pins grew with them.
    """

    __tablename__ = "pin_usage"

    publisher_id: Mapped[int] = mapped_column(
        ForeignKey("publishers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    pins: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
