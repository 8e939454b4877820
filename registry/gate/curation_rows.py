"""The rows curation writes beside a state change: the curated pointer's history and the audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.accounts.principal import Principal
from registry.db.base import utcnow
from registry.db.models import AuditEvent, Pointer, PointerChange
from registry.errors import Forbidden
from registry.gate.errors import ReasonRequired

TAG = "curated"
MAX_REASON = 1024


async def pointer_cid(s: AsyncSession, model_id: int) -> str | None:
    """Where the model's curated pointer is now (None: unset)."""
    return (
        await s.execute(select(Pointer.pack_cid).where(Pointer.model_id == model_id, Pointer.tag == TAG))
    ).scalar_one_or_none()


def history(
    model_id: int, from_cid: str | None, to_cid: str | None, actor: str, reason: str
) -> PointerChange:
    return PointerChange(
        model_id=model_id, tag=TAG, from_cid=from_cid, to_cid=to_cid, actor=actor, reason=reason, at=utcnow()
    )


def audit(
    s: AsyncSession, actor: str, action: str, subject: str, reason: str, details: dict[str, Any]
) -> None:
    s.add(
        AuditEvent(actor=actor, action=action, subject=subject, reason=reason, details=details, at=utcnow())
    )


def require_admin(principal: Principal, reason: str | None) -> str:
    """The reason of an admin's curation by hand (Forbidden for anyone else), checked."""
    if not principal.is_admin:
        raise Forbidden("only an admin token may curate or un-curate by hand")
    why = (reason or "").strip()
    if not why:
        raise ReasonRequired("give a reason: it goes into the audit log and the pointer history")
    if len(why) > MAX_REASON:
        raise ReasonRequired(f"the reason is longer than {MAX_REASON} characters")
    return why
