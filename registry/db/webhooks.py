"""Webhooks (registry.webhooks): endpoints a namespace admin registered, and one delivery row per message sent
(or to send) to one of them. Secrets are stored sealed under the key-encryption key, bound to the endpoint id.

An endpoint's ``last_event_id`` is the dispatcher's cursor in the event outbox: events after it have not been
turned into deliveries yet. A delivery keeps the exact body it sends (events may be pruned before the last
retry) and the outcome of its latest attempt.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.db.base import Base, UTCDateTime, str_enum, utcnow

URL_LEN = 2048
NAME_LEN = 128  # as registry.db.models.NAME_LEN
REASON_LEN = 1024
EXCERPT_LEN = 1024  # characters of a receiver's answer kept (read at most 1 KiB of it)
ERROR_LEN = 512


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # not attempted yet (or redelivery requested)
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # the last attempt failed; another is scheduled
    DEAD = "dead"  # out of attempts (or the endpoint was disabled or removed meanwhile)


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"), nullable=False)
    url: Mapped[str] = mapped_column(String(URL_LEN), nullable=False)
    event_types: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    model: Mapped[str | None] = mapped_column(String(NAME_LEN))  # only events of ns/model
    secret: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # sealed 32 bytes
    previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary)  # sealed; signs too until ...
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(REASON_LEN))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_event_id: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_by: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    __table_args__ = (
        CheckConstraint("consecutive_failures >= 0", name="failures_nonneg"),
        Index(None, "namespace_id"),
        Index(None, "enabled"),
    )


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
    )
    event_id: Mapped[int | None] = mapped_column(BigInteger)  # None: a test ping
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    message_id: Mapped[str] = mapped_column(String(64), nullable=False)  # the webhook-id header
    body: Mapped[str] = mapped_column(Text, nullable=False)  # exactly the bytes signed and sent (UTF-8)
    status: Mapped[DeliveryStatus] = mapped_column(
        str_enum(DeliveryStatus, "webhook_delivery_status"), nullable=False
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(ERROR_LEN))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_nonneg"),
        Index(None, "endpoint_id", "id"),
        Index(None, "status", "updated_at"),
    )
