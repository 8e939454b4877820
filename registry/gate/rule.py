"""The curation rule's facts: is a pack trusted by its namespace's policy, and replicated to its minimum?

Both checks are Protocol-typed callables so the composition root wires the real ones (#6's
``evaluate_pack_trust``, #7's ``pack_replication``) and tests pass fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from pinner.replication.model import Target
from registry.db.listings import find_listing
from registry.replication.summary import pack_replication, pack_target
from registry.trust.policies import evaluate_pack_trust


@dataclass(frozen=True)
class Fact:
    ok: bool
    reasons: tuple[str, ...] = ()
    detail: str = ""


class TrustCheck(Protocol):
    """The fact for the listing of ``pack_cid`` under the model ``model_id``."""

    async def __call__(self, session: AsyncSession, pack_cid: str, model_id: int) -> Fact: ...


class ReplicationCheck(Protocol):
    """The fact for the listing of ``pack_cid`` under the model ``model_id``."""

    async def __call__(self, session: AsyncSession, pack_cid: str, model_id: int) -> Fact: ...


async def registry_trust(session: AsyncSession, pack_cid: str, model_id: int) -> Fact:
    """The listing's namespace's trust policy over every stored signature, judged now (revocations included)."""
    verdict = await evaluate_pack_trust(session, pack_cid, model_id)
    detail = f"{len(verdict.trusted_valid)} trusted valid signature(s) of {verdict.required} required"
    return Fact(verdict.satisfied, tuple(verdict.reasons) if not verdict.satisfied else (), detail)


class RegistryReplication:
    """Every unit (shards and manifest) pinned on at least the pack's ``replication_min`` live nodes.

    Unlike the replication service's own ``satisfied`` (which caps the target by the nodes alive now,
    so it can make progress), curation asks for the configured minimum: a curated pack whose copies
    fell below it because a node died is exactly what must be flagged. With no IPFS node configured
    the embedded blockstore is the one replica and the check passes.
    """

    def __init__(self, defaults: Target, down_grace: timedelta) -> None:
        self._defaults = defaults
        self._grace = down_grace

    async def __call__(self, session: AsyncSession, pack_cid: str, model_id: int) -> Fact:
        summary = await pack_replication(session, pack_cid, defaults=self._defaults, down_grace=self._grace)
        if summary.embedded_only:
            return Fact(True, (), "no IPFS node configured: the embedded blockstore is the one replica")
        pack = await find_listing(session, pack_cid, model_id)
        need = (await pack_target(session, pack, self._defaults)).min
        short = [u for u in summary.units if u.pinned < need]
        detail = f"every unit on >= {summary.min_pinned} node(s); replication_min is {need}"
        if not short:
            return Fact(True, (), detail)
        worst = min(short, key=lambda u: u.pinned)
        return Fact(
            False,
            (
                f"{len(short)} of {len(summary.units)} unit(s) below replication_min {need} "
                f"(e.g. {worst.unit.name} on {worst.pinned} live node(s))",
            ),
            detail,
        )


@dataclass(frozen=True)
class RuleFacts:
    validated: bool
    trust: Fact
    replication: Fact

    @property
    def ok(self) -> bool:
        return self.validated and self.trust.ok and self.replication.ok

    def reasons(self) -> list[str]:
        out = [] if self.validated else ["the pack is not validated"]
        return out + list(self.trust.reasons) + list(self.replication.reasons)

    def summary(self) -> str:
        return f"validated; trusted ({self.trust.detail}); replicated ({self.replication.detail})"
