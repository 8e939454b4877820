"""``replication.satisfied`` / ``replication.lost``: a pack's content reaching or losing its replication target,
an event once per change (``manifests.replicated`` remembers the last judgement), for each listing of it."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.engine import write_session
from registry.db.models import Manifest, Model, Namespace, Pack
from registry.events import store as events
from registry.replication.summary import ReplicationSummary


async def note_target(sessions: async_sessionmaker[AsyncSession], summary: ReplicationSummary) -> bool:
    """Record whether ``summary``'s pack meets its target; True when that changed (and events were written).

    The first judgement writes an event only when the target is met (nothing was lost before it was ever
    reached). A compare-and-set on the stored value makes concurrent replicate jobs write one event.
    """
    cid, satisfied = summary.pack_cid, summary.satisfied
    async with write_session(sessions) as s:
        before = (await s.execute(select(Manifest.replicated).where(Manifest.cid == cid))).one_or_none()
        if before is None or before[0] is satisfied:
            return False
        was = before[0]
        res = await s.execute(
            update(Manifest)
            .where(Manifest.cid == cid, Manifest.replicated.is_not_distinct_from(was))
            .values(replicated=satisfied)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False  # another job judged it meanwhile
        if was is None and not satisfied:
            return True
        listed = await s.execute(
            select(Namespace.name, Model.name)
            .join(Model, Model.namespace_id == Namespace.id)
            .join(Pack, Pack.model_id == Model.id)
            .where(Pack.cid == cid)
            .order_by(Namespace.name, Model.name)
        )
        target = summary.units[0].target if summary.units else None
        payload = {
            "min_pinned": summary.min_pinned,
            "replication_min": target.min if target else None,
            "replication_max": target.max if target else None,
            "embedded_only": summary.embedded_only,
            "below": [u.unit.name for u in summary.units if not u.satisfied][:20],
        }
        for ns, name in listed:
            await events.record(
                s,
                "replication.satisfied" if satisfied else "replication.lost",
                model=f"{ns}/{name}",
                pack=cid,
                payload=payload,
            )
        return True
