"""Pack state transitions with their history row: the one place the gate changes ``Pack.state``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.base import utcnow
from registry.db.models import Pack, PackState, PackStateChange

# State diagram (DESIGN.md): received -> available -> validated -> curated, or rejected with the reason.
# A curated pack that degrades (rollback) or is un-curated goes back to validated; re-validation may
# reject any pack that has bytes.
ALLOWED: dict[PackState, frozenset[PackState]] = {
    PackState.RECEIVED: frozenset({PackState.AVAILABLE, PackState.REJECTED}),
    PackState.AVAILABLE: frozenset({PackState.VALIDATED, PackState.REJECTED}),
    PackState.VALIDATED: frozenset({PackState.CURATED, PackState.REJECTED}),
    PackState.CURATED: frozenset({PackState.VALIDATED, PackState.REJECTED}),
    PackState.REJECTED: frozenset({PackState.VALIDATED}),
}


def may_move(src: PackState, dst: PackState) -> bool:
    return dst in ALLOWED[src]


async def set_state(session: AsyncSession, pack: Pack, to: PackState, reason: str, actor: str) -> bool:
    """Move ``pack`` to ``to`` with ``reason`` (history row included); False when it was already there.

    Raises:
        ValueError: the move is not in the state diagram (a bug in the caller).
    """
    src = pack.state
    if src == to:
        if pack.state_reason != reason:
            pack.state_reason = reason
        return False
    if not may_move(src, to):
        raise ValueError(f"pack {pack.cid}: no transition {src.value} -> {to.value}")
    now = utcnow()
    pack.state = to
    pack.state_reason = reason
    pack.updated_at = now
    session.add(
        PackStateChange(pack_cid=pack.cid, from_state=src, to_state=to, reason=reason, actor=actor, at=now)
    )
    await session.flush()
    return True
