"""The curation rule's drift fact: does a pack behave like the one curated now, within its namespace's max_drift?

Both packs' behavioural fingerprints come from their newest passing validation report (``report["fingerprint"]``,
recorded by the sandbox); ``model_core.format.fingerprint.compare_fingerprints`` gives top-1 agreement and
mean KL(curated || candidate). Only the automatic rule applies it: a pack already curated is never degraded
by drift, and an admin may curate a drifting pack by hand with a reason (the override is recorded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from model_core.errors import bounded
from model_core.format.fingerprint import FingerprintMismatch, compare_fingerprints
from registry.db.models import Model, Namespace, Pack, Pointer, ValidationReport
from registry.gate.rule import Fact
from registry.trust.drift_limits import DriftLimits, parse_max_drift

TAG = "curated"
PASS = "pass"


@dataclass(frozen=True)
class DriftCheck:
    """The comparison of a pack with the curated one (what the fact and the pack's info report)."""

    limits: DriftLimits | None
    curated: str | None  # the curated pack's CID, when there is one other than the pack itself
    comparison: dict[str, Any] | None = None  # FingerprintDiff.to_dict()
    problem: str | None = None  # why the pack cannot be checked (a sentence): refuses under a limit
    note: str | None = None  # why there is nothing to compare with (the curated pack has no fingerprint)

    def fact(self) -> Fact:
        if self.limits is None or self.curated is None or self.note is not None:
            why = "no drift limit" if self.limits is None else self.note or "no curated pack to drift from"
            return Fact(True, (), why)
        if self.problem is not None:
            return Fact(False, (self.problem,))
        assert self.comparison is not None
        c, lim = self.comparison, self.limits
        agreement, kl = c["top1_agreement"], c["mean_kl"]
        past = (lim.min_top1_agreement is not None and agreement < lim.min_top1_agreement) or (
            lim.max_mean_kl is not None and kl > lim.max_mean_kl
        )
        figures = (
            f"top-1 agreement {agreement:.4g}, mean KL {kl:.4g} (max {c['max_kl']:.4g}) over {c['rows']} "
            f"probe rows against the curated pack {self.curated}; the namespace's max_drift is {lim.describe()}"
        )
        if past:
            return Fact(False, (f"the pack's behaviour drifts past max_drift: {figures}",), figures)
        return Fact(True, (), f"within max_drift: {figures}")

    def to_dict(self) -> dict[str, Any]:
        fact = self.fact()
        return {
            "limits": self.limits.to_dict() if self.limits is not None else None,
            "curated": self.curated,
            "comparison": self.comparison,
            "problem": self.problem,
            "note": self.note,
            "within_limits": fact.ok,
        }


async def namespace_limits(s: AsyncSession, model_id: int) -> DriftLimits | None:
    stored = (
        await s.execute(
            select(Namespace.max_drift)
            .join(Model, Model.namespace_id == Namespace.id)
            .where(Model.id == model_id)
        )
    ).scalar_one_or_none()
    return parse_max_drift(stored)


async def passing_report(s: AsyncSession, cid: str) -> dict[str, Any] | None:
    """The content's newest passing validation report (its fingerprint is the pack's behaviour)."""
    report = (
        await s.execute(
            select(ValidationReport.report)
            .where(ValidationReport.pack_cid == cid, ValidationReport.verdict == PASS)
            .order_by(ValidationReport.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return dict(report) if report is not None else None


def _missing(report: dict[str, Any] | None) -> str:
    if report is None:
        return "it has no passing validation report"
    why = report.get("fingerprint_error")
    return (
        f"its validation report has no fingerprint ({bounded(why, 200)})"
        if why
        else "its report has no fingerprint"
    )


async def check_drift(s: AsyncSession, pack: Pack, *, always: bool = False) -> DriftCheck:
    """Compare ``pack`` with the pack curated now for its model (``always``: even with no max_drift set)."""
    limits = await namespace_limits(s, pack.model_id)
    curated = (
        await s.execute(select(Pointer.pack_cid).where(Pointer.model_id == pack.model_id, Pointer.tag == TAG))
    ).scalar_one_or_none()
    if curated == pack.cid:
        curated = None
    if (limits is None and not always) or curated is None:
        return DriftCheck(limits, curated)
    mine = await passing_report(s, pack.cid)
    if mine is None or mine.get("fingerprint") is None:
        why = f"pack {pack.cid} cannot be checked against max_drift: {_missing(mine)}"
        return DriftCheck(limits, curated, problem=why)
    theirs = await passing_report(s, curated)
    if theirs is None or theirs.get("fingerprint") is None:  # nothing to compare with: no drift to refuse
        return DriftCheck(
            limits, curated, note=f"nothing to compare with: the curated pack {curated}: {_missing(theirs)}"
        )
    try:
        diff = compare_fingerprints(theirs["fingerprint"], mine["fingerprint"])
    except FingerprintMismatch as e:
        return DriftCheck(
            limits, curated, problem=f"cannot compare with the curated pack {curated}: {e.message}"
        )
    return DriftCheck(limits, curated, diff.to_dict())


async def drift_fact(s: AsyncSession, pack: Pack) -> Fact:
    """The curation rule's fact: ok unless max_drift is set and the pack drifts past it (or cannot be checked)."""
    return (await check_drift(s, pack)).fact()


async def with_drift_override(s: AsyncSession, pack: Pack, reason: str) -> str:
    """An admin's reason for curating by hand, with the drift figures appended when it overrides max_drift."""
    fact = await drift_fact(s, pack)
    return reason if fact.ok else f"{reason} (overriding: {'; '.join(fact.reasons)})"
