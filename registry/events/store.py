"""Writing and reading the event outbox (``registry.db.events.Event``).

``record`` adds an event to the caller's session, so it commits or rolls back with the change it describes.
On Postgres it first takes a transaction-scoped advisory lock: transactions that write events then commit in
id order, so a reader paging with ``id > after`` never skips an event that commits late with a smaller id.
Payloads are bounded: strings are cut to ``STRING_MAX`` characters, and a payload whose JSON is still over
``PAYLOAD_MAX_BYTES`` is replaced by a note saying so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from registry.db.base import utcnow
from registry.db.events import Event

# every type the daemon emits (the feed's ``type`` filter accepts these)
EVENT_TYPES: tuple[str, ...] = (
    "pack.published",
    "pack.available",
    "pack.validated",
    "pack.rejected",
    "pack.curated",
    "pack.degraded",
    "pack.uncurated",
    "pointer.moved",
    "replication.satisfied",
    "replication.lost",
    "node.up",
    "node.down",
    "key.registered",
    "key.revoked",
    "policy.changed",
    "pin.status",
)
WROTE = "modelpack_wrote_events"  # session.info flag: this transaction wrote events (see on_commit)
STRING_MAX = 1024
PAYLOAD_MAX_BYTES = 8192
OUTBOX_LOCK = 0x6D706B65766E7473  # "mpkevnts": pg_advisory_xact_lock key of the outbox


def bounded(value: Any, depth: int = 0) -> Any:
    """``value`` with every string cut to STRING_MAX characters and nesting cut at depth 6."""
    if isinstance(value, str):
        return value if len(value) <= STRING_MAX else value[: STRING_MAX - 3] + "..."
    if depth >= 6:
        return None
    if isinstance(value, dict):
        return {str(k)[:128]: bounded(v, depth + 1) for k, v in list(value.items())[:64]}
    if isinstance(value, list | tuple):
        return [bounded(v, depth + 1) for v in list(value)[:64]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return bounded(str(value), depth)


def _payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    out = bounded(payload or {})
    size = len(json.dumps(out, separators=(",", ":")))
    if size > PAYLOAD_MAX_BYTES:
        return {"truncated": True, "bytes": size}
    return dict(out)


async def record(
    session: AsyncSession,
    type: str,
    *,
    namespace: str | None = None,
    model: str | None = None,
    pack: str | None = None,
    actor: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Add one event to ``session``'s transaction (flushed: its id is assigned under the outbox lock)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    if (
        session.get_bind().dialect.name == "postgresql"
    ):  # held to the transaction's end; taking it again is cheap
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": OUTBOX_LOCK})
    session.info[WROTE] = True
    if namespace is None and model is not None:
        namespace = model.partition("/")[0]
    session.add(
        Event(
            type=type,
            namespace=namespace,
            model=model,
            pack=pack,
            actor=actor[:128] if actor else actor,
            created_at=utcnow(),
            payload=_payload(payload),
        )
    )
    await session.flush()


async def model_name(session: AsyncSession, model_id: int) -> str:
    """``ns/model`` of a model row (events name the model, not its id)."""
    from registry.db.models import Model, Namespace

    ns, name = (
        await session.execute(
            select(Namespace.name, Model.name)
            .join(Model, Model.namespace_id == Namespace.id)
            .where(Model.id == model_id)
        )
    ).one()
    return f"{ns}/{name}"


async def pointer_moved(
    session: AsyncSession,
    model_id: int,
    tag: str,
    from_cid: str | None,
    to_cid: str | None,
    *,
    actor: str | None,
    reason: str | None,
) -> None:
    """The ``pointer.moved`` event (``to`` None: the pointer was removed)."""
    await record(
        session,
        "pointer.moved",
        model=await model_name(session, model_id),
        pack=to_cid,
        actor=actor,
        payload={"tag": tag, "from": from_cid, "to": to_cid, "by": actor, "reason": reason},
    )


async def page(
    session: AsyncSession,
    *,
    after: int = 0,
    types: Sequence[str] = (),
    namespace: str | None = None,
    limit: int = 100,
) -> list[Event]:
    """Events with ``id > after`` in id order, filtered by type (any of) and namespace."""
    q = select(Event).where(Event.id > after)
    if types:
        q = q.where(Event.type.in_(list(types)))
    if namespace is not None:
        q = q.where(func.lower(Event.namespace) == namespace.lower())  # names are unique case-blind
    return list((await session.execute(q.order_by(Event.id).limit(limit))).scalars())


async def last_id(session: AsyncSession) -> int:
    return int((await session.execute(select(func.coalesce(func.max(Event.id), 0)))).scalar_one())


async def prune(session: AsyncSession, before: datetime) -> int:
    """Delete events created before ``before``; returns how many."""
    result = await session.execute(delete(Event).where(Event.created_at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def event_json(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "type": e.type,
        "namespace": e.namespace,
        "model": e.model,
        "pack": e.pack,
        "actor": e.actor,
        "created_at": e.created_at.isoformat().replace("+00:00", "Z"),
        "payload": e.payload,
    }


# Committed events wake this process's stream poller at once (other daemons' events are polled for).
_wakers: set[Callable[[], None]] = set()


def add_waker(wake: Callable[[], None]) -> None:
    _wakers.add(wake)


def remove_waker(wake: Callable[[], None]) -> None:
    _wakers.discard(wake)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(WROTE, False):
        for wake in list(_wakers):
            wake()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(WROTE, None)
