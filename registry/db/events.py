"""The event outbox: one row per state change users care about, written in the change's own transaction.

Ids increase monotonically in commit order: on Postgres every transaction that writes an event first takes
one transaction-scoped advisory lock (registry.events.store), so an event never becomes visible after one
with a higher id; SQLite serialises writers anyway. Readers page with ``id > after``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from registry.db.base import Base, UTCDateTime, utcnow

TYPE_LEN = 64
NAME_LEN = 128  # as registry.db.models.NAME_LEN
MODEL_LEN = 2 * NAME_LEN + 1  # "ns/model"
CID_LEN = 128  # as registry.db.models.CID_LEN


class Event(Base):
    __tablename__ = "events"
    # BIGINT on Postgres, INTEGER (the rowid alias, so AUTOINCREMENT-free but monotonic) on SQLite
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    type: Mapped[str] = mapped_column(String(TYPE_LEN), nullable=False)
    namespace: Mapped[str | None] = mapped_column(String(NAME_LEN))
    model: Mapped[str | None] = mapped_column(String(MODEL_LEN))  # "ns/model"
    pack: Mapped[str | None] = mapped_column(String(CID_LEN))
    actor: Mapped[str | None] = mapped_column(String(NAME_LEN))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    __table_args__ = (
        Index(None, "type", "id"),
        Index(None, "namespace", "id"),
        Index(None, "created_at"),
    )
