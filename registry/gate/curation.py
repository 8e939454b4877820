"""Curation: move ``ns/model@curated`` only to packs validated, trusted, replicated (and within max_drift); flag the
curated pack that stops being fit and roll back (or hold, per ``curation.on_degrade``); admins curate
or un-curate by hand with a reason. Every move is a compare-and-swap with history and an audit event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.accounts.principal import Principal
from registry.db.engine import readonly_session
from registry.db.listings import ModelSelector, find_listing, listing_in
from registry.db.models import Pack, PackState, Pointer, PointerChange
from registry.events import store as events
from registry.gate.config import GateConfig
from registry.gate.curation_rows import TAG, audit, history, pointer_cid, require_admin
from registry.gate.drift import drift_fact, with_drift_override
from registry.gate.errors import CurationRefused
from registry.gate.rule import Fact, ReplicationCheck, RuleFacts, TrustCheck
from registry.names import ModelRef
from registry.packs.lifecycle import model_ref_of, pack_event, set_state
from registry.packs.pointers import PointerMoved, move_pointer

log = logging.getLogger("modelpack.gate")
DEGRADED = "degraded"  # Pack.flagged prefixes: the gate's own flag clears itself when the pack recovers;
UNCURATED = "un-curated: "  # an admin's does not (only a manual curate clears it)
SWEEP_PAGE = 1000  # curated pointers read per query by the sweep
_IS_TARGET = (  # NOT EXISTS: no bind per curated model
    (Pointer.tag == TAG) & (Pointer.model_id == Pack.model_id) & (Pointer.pack_cid == Pack.cid)
)

Status = Literal["curated", "not_validated", "untrusted", "waiting_replicas", "drifted", "withheld"]


@dataclass(frozen=True)
class CurationOutcome:
    cid: str
    status: Status
    reasons: tuple[str, ...] = ()
    pointer_moved: bool = False
    pointer: str | None = None  # where ns/model@curated points afterwards


class CurationService:
    """The curation rule, the curated pointer and its degrade handling; one per daemon."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: GateConfig,
        trust: TrustCheck,
        replication: ReplicationCheck,
        *,
        on_moved: PointerMoved | None = None,
        on_changed: Callable[[ModelRef], None] | None = None,
        on_withdrawn: Callable[[AsyncSession, int, str], Awaitable[object]] | None = None,
    ) -> None:
        self._sessions = sessions
        self.config = config
        self._trust = trust
        self._replication = replication
        self._on_moved = on_moved  # signs the channel's next IPNS record, inside the move's transaction
        self._on_changed = on_changed  # drops cached pointers of the model
        self._on_withdrawn = on_withdrawn  # signs the channel's withdrawal record when the pointer goes

    # -- the rule --------------------------------------------------------------------------------

    async def facts(self, session: AsyncSession, pack: Pack) -> RuleFacts:
        validated = pack.state in (PackState.VALIDATED, PackState.CURATED)
        try:
            trust = await self._trust(session, pack.cid, pack.model_id)
        except Exception as e:  # a broken signature row must not stop the sweep
            trust = Fact(False, (f"trust could not be evaluated: {e}",))
        try:
            repl = await self._replication(session, pack.cid, pack.model_id)
        except Exception as e:
            repl = Fact(False, (f"replication could not be evaluated: {e}",))
        return RuleFacts(validated, trust, repl)

    async def try_curate(self, cid: str, model: ModelSelector = None) -> CurationOutcome:
        """Curate ``cid`` (its listing under ``model``) if the rule holds now; the pointer moves unless a newer
        curated pack holds it."""
        async with self._sessions() as s, s.begin():
            pack = await _pack(s, cid, model)
            if pack.state not in (PackState.VALIDATED, PackState.CURATED):
                return CurationOutcome(cid, "not_validated", (f"the pack is {pack.state.value}",))
            if pack.flagged and pack.flagged.startswith(UNCURATED):
                return CurationOutcome(cid, "withheld", (pack.flagged,))
            facts = await self.facts(s, pack)
            drift = await drift_fact(s, pack) if pack.state is PackState.VALIDATED else Fact(True)
            checks: tuple[tuple[Fact, Status, str], ...] = (
                (facts.trust, "untrusted", "not curated"),
                (facts.replication, "waiting_replicas", "waiting for replicas"),
                (drift, "drifted", "not curated"),
            )
            for fact, status, why in checks:
                if not fact.ok:
                    if pack.state is PackState.VALIDATED:
                        pack.state_reason = f"validated; {why}: " + "; ".join(fact.reasons)
                    return CurationOutcome(cid, status, fact.reasons)
            if pack.state is PackState.CURATED and not pack.flagged:
                return CurationOutcome(cid, "curated", (), False, await pointer_cid(s, pack.model_id))
            ref = await model_ref_of(s, pack.model_id)
            moved = await self._promote(s, pack, ref, facts.summary(), self.config.actor, force=False)
        self._changed(ref)
        return moved

    async def _promote(
        self, s: AsyncSession, pack: Pack, ref: ModelRef, reason: str, actor: str, *, force: bool
    ) -> CurationOutcome:
        recovered = pack.flagged
        pack.flagged = None
        if not await set_state(s, pack, PackState.CURATED, reason, actor) and recovered:
            await pack_event(s, pack, "pack.curated", f"fit again, flag cleared: {reason}", actor, pack.state)
        current = await pointer_cid(s, pack.model_id)
        move = force or current is None
        if not move and current is not None and current != pack.cid:
            holder = await listing_in(s, pack.model_id, current)
            move = (
                holder is None
                or holder.state is not PackState.CURATED
                or holder.flagged is not None
                or holder.created_at <= pack.created_at
            )
        moved = False
        if move and current != pack.cid:
            moved = await move_pointer(
                s,
                pack.model_id,
                TAG,
                pack.cid,
                actor=actor,
                reason=reason,
                expected=current,
                on_moved=self._on_moved,
            )
        elif recovered and current == pack.cid:
            s.add(history(pack.model_id, pack.cid, pack.cid, actor, f"fit again, flag cleared: {reason}"))
        audit(
            s,
            actor,
            "pack.curated",
            f"{ref}@{TAG}",
            reason,
            {"pack": pack.cid, "previous": current, "pointer_moved": moved, "recovered_from": recovered},
        )
        await s.flush()
        return CurationOutcome(pack.cid, "curated", (), moved, pack.cid if moved else current)

    # -- degrade ---------------------------------------------------------------------------------

    async def check_curated(self, cid: str, model: ModelSelector = None) -> CurationOutcome:
        """Re-check a curated pack (its listing under ``model``); flag it (and roll back or hold) when it is
        no longer fit."""
        # Read first: a curated pack that is still fit, the usual case each sweep, needs no write transaction
        # (on SQLite that would hold the one writer's lock for the whole rule, pack after pack).
        async with readonly_session(self._sessions) as s:
            pack = await find_listing(s, cid, model)
            if pack.state is not PackState.CURATED:
                return CurationOutcome(cid, "not_validated", (f"the pack is {pack.state.value}",))
            if pack.flagged is None and (await self.facts(s, pack)).ok:
                return CurationOutcome(cid, "curated", (), False, await pointer_cid(s, pack.model_id))
        # Something is to change: decide again inside the write transaction, as of now.
        async with self._sessions() as s, s.begin():
            pack = await _pack(s, cid, model)
            if pack.state is not PackState.CURATED:
                return CurationOutcome(cid, "not_validated", (f"the pack is {pack.state.value}",))
            facts = await self.facts(s, pack)
            ref = await model_ref_of(s, pack.model_id)
            if facts.ok:
                if pack.flagged is None:
                    return CurationOutcome(cid, "curated", (), False, await pointer_cid(s, pack.model_id))
                out = await self._promote(s, pack, ref, facts.summary(), self.config.actor, force=False)
            else:
                kind = "untrusted" if not facts.trust.ok else "under_replicated"
                out = await self.degrade(s, pack, ref, "; ".join(facts.reasons()), self.config.actor, kind)
        self._changed(ref)
        return out

    async def degrade(
        self, s: AsyncSession, pack: Pack, ref: ModelRef, why: str, actor: str, kind: str = "invalid"
    ) -> CurationOutcome:
        """Inside the caller's transaction: flag a curated pack and apply ``on_degrade``.

        ``kind`` (a ``modelpack gate`` failure kind: untrusted, under_replicated, invalid, smoke_failed)
        is kept in the flag as ``degraded (KIND): why`` so clients can tell why without parsing prose.
        """
        flag = f"{DEGRADED} ({kind}): {why}"
        if pack.flagged == flag:
            return CurationOutcome(pack.cid, "withheld", (why,), False, await pointer_cid(s, pack.model_id))
        pack.flagged = flag
        if self.config.on_degrade == "hold":
            pack.state_reason = f"curated but flagged (on_degrade=hold): {why}"
            await pack_event(s, pack, "pack.degraded", why, actor, pack.state)
            current = await pointer_cid(s, pack.model_id)
            if current == pack.cid:
                s.add(history(pack.model_id, pack.cid, pack.cid, actor, f"hold: {why}; an admin must act"))
            log.warning("ALERT curated pack %s of %s is no longer fit and is held: %s", pack.cid, ref, why)
            audit(s, actor, "pack.degraded", f"{ref}@{TAG}", why, {"pack": pack.cid, "mode": "hold"})
            await s.flush()
            return CurationOutcome(pack.cid, "withheld", (why,), False, current)
        await set_state(
            s, pack, PackState.VALIDATED, f"no longer curated: {why}", actor, event="pack.degraded"
        )
        target = await self._withdraw(s, pack, ref, f"rollback from {pack.cid}: {why}", actor)
        log.warning("curated pack %s of %s is no longer fit (%s); pointer now %s", pack.cid, ref, why, target)
        audit(
            s,
            actor,
            "pack.degraded",
            f"{ref}@{TAG}",
            why,
            {"pack": pack.cid, "mode": "rollback", "to": target},
        )
        await s.flush()
        return CurationOutcome(pack.cid, "withheld", (why,), True, target)

    async def _withdraw(
        self, s: AsyncSession, pack: Pack, ref: ModelRef, reason: str, actor: str
    ) -> str | None:
        """If the pointer names ``pack``: move it to the newest earlier fit curated pack, else remove it."""
        current = await pointer_cid(s, pack.model_id)
        if current != pack.cid:
            return current
        target = await self._previous_fit(s, pack)
        if target is not None:
            await move_pointer(
                s,
                pack.model_id,
                TAG,
                target,
                actor=actor,
                reason=reason,
                expected=pack.cid,
                on_moved=self._on_moved,
            )
            return target
        await s.execute(delete(Pointer).where(Pointer.model_id == pack.model_id, Pointer.tag == TAG))
        await events.pointer_moved(s, pack.model_id, TAG, pack.cid, None, actor=actor, reason=reason)
        if self._on_withdrawn is not None:
            await self._on_withdrawn(s, pack.model_id, TAG)
        s.add(
            history(
                pack.model_id, pack.cid, None, actor, f"{reason}; no earlier curated pack to roll back to"
            )
        )
        return None

    async def _previous_fit(self, s: AsyncSession, pack: Pack) -> str | None:
        rows = await s.execute(
            select(PointerChange.to_cid, PointerChange.from_cid)
            .where(PointerChange.model_id == pack.model_id, PointerChange.tag == TAG)
            .order_by(PointerChange.id.desc())
        )
        seen = {pack.cid}
        for to_cid, from_cid in rows:
            for cid in (to_cid, from_cid):
                if cid is None or cid in seen:
                    continue
                seen.add(cid)
                other = await listing_in(s, pack.model_id, cid)
                if other is None or other.state is not PackState.CURATED or other.flagged:
                    continue
                if (await self.facts(s, other)).ok:
                    return cid
        return None

    # -- the sweep -------------------------------------------------------------------------------

    async def sweep(self) -> dict[str, int]:
        """Re-check curated packs (lost replicas, revoked keys) and try every validated one."""
        counts: dict[str, int] = {}

        def count(out: CurationOutcome) -> None:
            counts[out.status] = counts.get(out.status, 0) + 1

        async with self._sessions() as s:
            # Other curated packs (rollback candidates) and validated ones waiting for trust or replicas, a
            # random batch at a time, chosen before any check (as the pointers were).
            others = (
                await s.execute(
                    select(Pack.cid, Pack.model_id)
                    .where(Pack.state == PackState.CURATED, ~exists().where(_IS_TARGET))
                    .order_by(func.random())
                    .limit(self.config.sweep_batch)
                )
            ).all()
            waiting = (
                await s.execute(
                    select(Pack.cid, Pack.model_id)
                    .where(Pack.state == PackState.VALIDATED)
                    .order_by(func.random())
                    .limit(self.config.sweep_batch)
                )
            ).all()
        # Every pack a curated pointer names, each sweep, a page of pointers at a time (keyset on the id).
        after = 0
        while True:
            async with self._sessions() as s:
                page = (
                    await s.execute(
                        select(Pointer.id, Pointer.pack_cid, Pointer.model_id)
                        .where(Pointer.tag == TAG, Pointer.id > after)
                        .order_by(Pointer.id)
                        .limit(SWEEP_PAGE)
                    )
                ).all()
            for _, cid, mid in page:  # each listing by its model: a CID may be listed under several
                count(await self.check_curated(cid, mid))
            if len(page) < SWEEP_PAGE:
                break
            after = page[-1][0]
        for cid, mid in others:
            count(await self.check_curated(cid, mid))
        for cid, mid in waiting:
            count(await self.try_curate(cid, mid))
        return counts

    # -- by hand ---------------------------------------------------------------------------------

    async def curate(
        self, principal: Principal, cid: str, reason: str | None, model: ModelSelector = None
    ) -> CurationOutcome:
        """An admin of the pack's namespace points ``@curated`` at ``cid`` (any age; its listing under
        ``model``) if it is validated, trusted and replicated."""
        why = require_admin(principal, reason)
        async with self._sessions() as s, s.begin():
            pack = await _pack(s, cid, model)
            ref = await model_ref_of(s, pack.model_id)
            principal.require_admin_of(ref.namespace, "curating by hand")
            facts = await self.facts(s, pack)
            if not facts.ok:
                raise CurationRefused(
                    f"pack {cid} cannot be curated: {'; '.join(facts.reasons())}",
                    cid=cid,
                    state=pack.state.value,
                )
            why = await with_drift_override(s, pack, why)  # a drift past max_drift: its figures on record
            pack.flagged = None
            out = await self._promote(
                s, pack, ref, f"curated by hand: {why}", principal.publisher, force=True
            )
            audit(s, principal.publisher, "pack.curate.manual", f"{ref}@{TAG}", why, {"pack": cid})
        self._changed(ref)
        return out

    async def uncurate(
        self, principal: Principal, cid: str, reason: str | None, model: ModelSelector = None
    ) -> CurationOutcome:
        """An admin of the pack's namespace withdraws a curated pack (its listing under ``model``): the
        pointer rolls back (or is removed); it stays withheld. Other models' listings are untouched."""
        why = require_admin(principal, reason)
        async with self._sessions() as s, s.begin():
            pack = await _pack(s, cid, model)
            ref = await model_ref_of(s, pack.model_id)
            principal.require_admin_of(ref.namespace, "un-curating by hand")
            current = await pointer_cid(s, pack.model_id)
            if pack.state is not PackState.CURATED and current != cid:
                raise CurationRefused(
                    f"pack {cid} is {pack.state.value} and not the curated pointer's target; nothing to un-curate",
                    cid=cid,
                    state=pack.state.value,
                )
            pack.flagged = f"{UNCURATED}by {principal.publisher}: {why}"
            if pack.state is PackState.CURATED:
                await set_state(
                    s, pack, PackState.VALIDATED, f"un-curated by hand: {why}", principal.publisher
                )
            target = await self._withdraw(s, pack, ref, f"un-curated by hand: {why}", principal.publisher)
            audit(
                s,
                principal.publisher,
                "pack.uncurate.manual",
                f"{ref}@{TAG}",
                why,
                {"pack": cid, "to": target},
            )
            await s.flush()
        self._changed(ref)
        return CurationOutcome(cid, "withheld", (why,), current != target, target)

    def _changed(self, ref: ModelRef) -> None:
        if self._on_changed is not None:
            self._on_changed(ref)


async def _pack(s: AsyncSession, cid: str, model: ModelSelector) -> Pack:
    # Row lock (Postgres): the sweep, a curate job and a finishing validation may look at one pack at once.
    return await find_listing(s, cid, model, for_update=True)
