"""The registry's signing keys: publishers register Ed25519 public keys and revoke them with a time.

Signing time is the registry's receipt time. A signer's own timestamp proves nothing (whoever holds a
stolen key writes any date), so a signature counts as made no later than ``Signature.received_at``,
when the registry first stored it. Revoking a key at time T invalidates every signature of that key
the registry received at or after T and leaves older ones valid. Only admins may set T in the past:
it re-judges signatures the registry already accepted. No HTTP in here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.accounts.auth import Principal
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.models import AuditEvent, Publisher, Signature, SignatureVerdict, SigningKey
from registry.errors import BadRequest, Conflict, Forbidden, NotFound
from registry.trust.keys import ALGORITHM, parse_public_key


@dataclass(frozen=True)
class TrustConfig:
    """Limits of the key registry and policy API."""

    past_revocation_slack_s: float = 60.0  # an owner's ``at`` this close to now counts as "now"
    max_policy_keys: int = 256
    max_policy_publishers: int = 64
    max_reason_len: int = 1024

    def __post_init__(self) -> None:
        if self.past_revocation_slack_s < 0 or self.max_policy_keys < 1 or self.max_policy_publishers < 1:
            raise ValueError("trust limits must be positive")


@dataclass(frozen=True, slots=True)
class KeyView:
    key_id: str
    publisher: str | None
    algorithm: str
    public_key: str  # raw 32 bytes, base64
    registered_at: datetime
    revoked_at: datetime | None
    revocation_reason: str | None


@dataclass(frozen=True, slots=True)
class RevokeResult:
    key: KeyView
    revalidated_signatures: int  # signatures received at or after the revocation, now judged revoked
    affected_packs: tuple[str, ...]


def key_view(k: SigningKey, publisher: str | None) -> KeyView:
    return KeyView(
        k.key_id,
        publisher,
        k.algorithm,
        base64.b64encode(k.public_key).decode("ascii"),
        k.registered_at,
        k.revoked_at,
        k.revocation_reason,
    )


async def keys_with_publishers(session: AsyncSession, where: Any) -> list[KeyView]:
    rows = await session.execute(
        select(SigningKey, Publisher.name)
        .outerjoin(Publisher, Publisher.id == SigningKey.publisher_id)
        .where(where)
        .order_by(SigningKey.key_id)
    )
    return [key_view(k, name) for k, name in rows]


class KeyRegistry:
    """Registration, lookup and revocation of publishers' signing keys; changes are audited."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], config: TrustConfig = TrustConfig()
    ) -> None:
        self._sessions = sessions
        self.config = config

    async def register_key(self, principal: Principal, public_key: str) -> tuple[KeyView, bool]:
        """Registers an Ed25519 public key (PEM or base64) for the caller's publisher.

        Returns the key and whether it was new; registering one's own key again changes nothing.

        Raises:
            BadPublicKey, Forbidden (no publish scope), Conflict (another publisher's, or revoked).
        """
        if not ({"publish", "admin"} & principal.scopes):
            raise Forbidden("registering a signing key needs a token with the publish scope")
        pk = parse_public_key(public_key)
        try:
            async with self._sessions() as s, s.begin():
                existing = await s.get(SigningKey, pk.key_id)
                if existing is not None:
                    if existing.publisher_id != principal.publisher_id:
                        raise Conflict(
                            f"key {pk.key_id} is registered to another publisher", key_id=pk.key_id
                        )
                    return key_view(existing, principal.publisher), False
                row = SigningKey(
                    key_id=pk.key_id,
                    publisher_id=principal.publisher_id,
                    algorithm=ALGORITHM,
                    public_key=pk.raw,
                    registered_at=utcnow(),
                )
                s.add(row)
                s.add(
                    AuditEvent(
                        actor=principal.publisher,
                        action="key.register",
                        subject=f"key:{pk.key_id}",
                        details={"publisher": principal.publisher},
                    )
                )
                await s.flush()
                return key_view(row, principal.publisher), True
        except IntegrityError:  # a concurrent registration of the same key: read what won
            async with readonly_session(self._sessions) as s:
                view = await self._get(s, pk.key_id)
            if view.publisher != principal.publisher:
                raise Conflict(
                    f"key {pk.key_id} is registered to another publisher", key_id=pk.key_id
                ) from None
            return view, False

    async def _get(self, s: AsyncSession, key_id: str) -> KeyView:
        found = await keys_with_publishers(s, SigningKey.key_id == key_id)
        if not found:
            raise NotFound(f"no signing key {key_id!r}", key_id=key_id)
        return found[0]

    async def get_key(self, key_id: str) -> KeyView:
        async with readonly_session(self._sessions) as s:
            return await self._get(s, key_id)

    async def list_keys(self, publisher: str | None, *, after: str | None, limit: int) -> list[KeyView]:
        """Keys ordered by key id, optionally of one publisher; ``after`` is the previous page's last id."""
        cond: Any = SigningKey.key_id > (after or "")
        async with readonly_session(self._sessions) as s:
            if publisher is not None:
                pid = (await s.execute(select(Publisher.id).where(Publisher.name == publisher))).scalar()
                if pid is None:
                    raise NotFound(f"no publisher {publisher!r}", publisher=publisher)
                cond = cond & (SigningKey.publisher_id == pid)
            return (await keys_with_publishers(s, cond))[:limit]

    async def revoke_key(
        self, principal: Principal, key_id: str, reason: str, at: datetime | None = None
    ) -> RevokeResult:
        """Revokes a key from ``at`` (default now): signatures the registry received from then on are invalid.

        Raises:
            NotFound, Forbidden (not the owner; a past time without admin), Conflict (already revoked
            at that time or earlier), BadRequest (empty or long reason).
        """
        reason = reason.strip()
        if not reason or len(reason) > self.config.max_reason_len:
            raise BadRequest(f"a revocation needs a reason of 1 to {self.config.max_reason_len} characters")
        now = utcnow()
        when = at or now
        if when.tzinfo is None:
            raise BadRequest("the revocation time must carry a time zone (e.g. 2026-03-01T00:00:00Z)")
        backdated = when < now - timedelta(seconds=self.config.past_revocation_slack_s)
        if not principal.is_admin:
            if backdated:
                raise Forbidden(
                    f"revoking in the past ({when.isoformat()}) re-judges accepted signatures; only an admin may",
                    key_id=key_id,
                )
            when = max(when, now)
        async with self._sessions() as s, s.begin():
            row = await s.get(SigningKey, key_id, with_for_update=True)
            if row is None or (not principal.is_admin and row.publisher_id != principal.publisher_id):
                raise NotFound(
                    f"no signing key {key_id!r} of publisher {principal.publisher!r}", key_id=key_id
                )
            if row.revoked_at is not None and row.revoked_at <= when:
                raise Conflict(
                    f"key {key_id} is already revoked since {row.revoked_at.isoformat()}",
                    key_id=key_id,
                    revoked_at=row.revoked_at.isoformat(),
                )
            before = row.revoked_at.isoformat() if row.revoked_at else None
            row.revoked_at, row.revocation_reason = when, reason
            hit = (
                await s.execute(
                    select(Signature.pack_cid).where(
                        Signature.key_id == key_id,
                        Signature.received_at >= when,
                        Signature.verdict == SignatureVerdict.VALID,
                    )
                )
            ).scalars()
            packs = tuple(sorted(set(hit)))
            res = await s.execute(
                update(Signature)
                .where(
                    Signature.key_id == key_id,
                    Signature.received_at >= when,
                    Signature.verdict == SignatureVerdict.VALID,
                )
                .values(
                    verdict=SignatureVerdict.REVOKED,
                    verdict_reason=f"key revoked at {when.isoformat()}: {reason}",
                )
                .execution_options(synchronize_session=False)
            )
            s.add(
                AuditEvent(
                    actor=principal.publisher,
                    action="key.revoke",
                    subject=f"key:{key_id}",
                    reason=reason,
                    details={
                        "before": before,
                        "after": when.isoformat(),
                        "affected_packs": list(packs[:100]),
                    },
                )
            )
            await s.flush()
            publisher = (
                await s.execute(select(Publisher.name).where(Publisher.id == row.publisher_id))
            ).scalar()
            return RevokeResult(key_view(row, publisher), int(res.rowcount or 0), packs)  # type: ignore[attr-defined]
