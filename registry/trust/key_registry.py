"""The registry's signing keys: publishers register Ed25519 public keys and revoke them with a time.

Signing time is the registry's receipt time. A signer's own timestamp proves nothing (whoever holds a
stolen key writes any date), so a signature counts as made no later than ``Signature.received_at``,
when the registry first stored it. Revoking a key at time T invalidates every signature of that key
the registry received at or after T and leaves older ones valid. Only global admins may set T in the
past: it re-judges signatures the registry already accepted. No HTTP in here.

Registering needs proof of possession: the registry issues a challenge (``issue_challenge``) and the
key signs a statement naming the publisher, the key and the challenge (``key_challenge``), so nobody
registers a key they do not hold. A token's namespace list bounds key operations: a key of publisher P
counts wherever a policy trusts P, so a token limited to some namespaces registers keys only while every
namespace trusting P is among them, and revokes another publisher's keys only as an admin of every
namespace that publisher belongs to.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.accounts.principal import Principal
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.models import (
    AuditEvent,
    Namespace,
    NamespaceMember,
    Publisher,
    Signature,
    SignatureVerdict,
    SigningKey,
    TrustedKey,
)
from registry.errors import BadRequest, Conflict, Forbidden, NotFound
from registry.events import store as events
from registry.trust.errors import KeyProofInvalid
from registry.trust.key_challenge import Challenge, ChallengeError, Challenges
from registry.trust.keys import ALGORITHM, SIGNATURE_BYTES, PublicKey, parse_public_key


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


async def keys_with_publishers(session: AsyncSession, where: Any, limit: int | None = None) -> list[KeyView]:
    rows = await session.execute(
        select(SigningKey, Publisher.name)
        .outerjoin(Publisher, Publisher.id == SigningKey.publisher_id)
        .where(where)
        .order_by(SigningKey.key_id)
        .limit(limit)
    )
    return [key_view(k, name) for k, name in rows]


class KeyRegistry:
    """Registration, lookup and revocation of publishers' signing keys; changes are audited."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: TrustConfig = TrustConfig(),
        challenge_secret: bytes | None = None,
    ) -> None:
        self._sessions = sessions
        self.config = config
        self.challenges = Challenges(challenge_secret)

    async def _check_may_register(self, principal: Principal) -> None:
        if not principal.may_write:
            raise Forbidden("registering a signing key needs a token with the publish scope")
        if principal.namespaces is None:
            return
        async with readonly_session(self._sessions) as s:
            trusting = (
                await s.execute(
                    select(Namespace.name)
                    .join(TrustedKey, TrustedKey.namespace_id == Namespace.id)
                    .where(TrustedKey.publisher_id == principal.publisher_id)
                    .order_by(Namespace.name)
                )
            ).scalars()
            outside = [n for n in trusting if not principal.covers(n)]
        if outside or principal.namespaces == ():
            where = f"namespace {outside[0]!r} trusts publisher {principal.publisher!r}" if outside else ""
            raise Forbidden(
                f"a new key of {principal.publisher!r} counts wherever a policy trusts it"
                f"{' (' + where + ')' if where else ''}; this token is limited to namespaces"
                f" {', '.join(principal.namespaces[:8]) or '(none)'}: use a token that covers them",
                namespace=outside[0] if outside else None,
            )

    async def issue_challenge(self, principal: Principal, public_key: str) -> tuple[PublicKey, Challenge]:
        """A registration challenge for ``public_key`` and the caller's publisher (single use, short-lived).

        Raises:
            BadPublicKey, Forbidden (no publish scope, or a namespace list narrower than the key's reach).
        """
        pk = parse_public_key(public_key)
        await self._check_may_register(principal)
        return pk, self.challenges.issue(principal.publisher_id, principal.publisher, pk.key_id)

    async def register_key(
        self, principal: Principal, public_key: str, challenge: str, signature: str
    ) -> tuple[KeyView, bool]:
        """Registers an Ed25519 public key (PEM or base64) for the caller's publisher.

        ``signature`` (base64) is the key's signature of the statement ``issue_challenge`` returned.
        Returns the key and whether it was new; registering one's own key again changes nothing.

        Raises:
            BadPublicKey, KeyProofInvalid (no proof of possession), Forbidden (no publish scope),
            Conflict (another publisher's, or revoked).
        """
        pk = parse_public_key(public_key)
        await self._check_may_register(principal)
        try:
            sig = base64.b64decode(signature, validate=True)
        except ValueError:
            sig = b""
        if len(sig) != SIGNATURE_BYTES:
            raise KeyProofInvalid(
                f"the signature must be {SIGNATURE_BYTES} bytes in base64", reason="bad_signature"
            )
        statement = self.challenges.statement(principal.publisher, pk.key_id, challenge)
        if not pk.verify(sig, statement):
            raise KeyProofInvalid(
                f"the signature does not verify with key {pk.key_id}: sign the challenge's statement"
                " with this key's private key (proof of possession)",
                key_id=pk.key_id,
                reason="bad_signature",
            )
        try:
            self.challenges.redeem(challenge, principal.publisher_id, pk.key_id)
        except ChallengeError as e:
            raise KeyProofInvalid(str(e), key_id=pk.key_id, reason="bad_challenge") from None
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
                await events.record(
                    s,
                    "key.registered",
                    actor=principal.publisher,
                    payload={"key_id": pk.key_id, "publisher": principal.publisher},
                )
                return key_view(row, principal.publisher), True
        except IntegrityError:  # a concurrent registration of the same key: read what won
            async with readonly_session(self._sessions) as s:
                view = await self._get(s, pk.key_id)
            if view.publisher != principal.publisher:
                raise Conflict(
                    f"key {pk.key_id} is registered to another publisher", key_id=pk.key_id
                ) from None
            return view, False

    async def _may_revoke(self, s: AsyncSession, principal: Principal, row: SigningKey) -> bool:
        """The owner (a write-scope token); a global admin; an admin of every namespace the owner is in."""
        if principal.is_global_admin:
            return True
        if row.publisher_id == principal.publisher_id:
            return True
        if not principal.is_admin or row.publisher_id is None:
            return False
        names = list(
            (
                await s.execute(
                    select(Namespace.name)
                    .join(NamespaceMember, NamespaceMember.namespace_id == Namespace.id)
                    .where(NamespaceMember.publisher_id == row.publisher_id)
                )
            ).scalars()
        )
        return bool(names) and all(principal.covers(n) for n in names)

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
            return await keys_with_publishers(s, cond, limit)

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
        if not principal.may_write:
            raise Forbidden("revoking a signing key needs a token with the publish or admin scope")
        if not principal.is_global_admin:
            if backdated:
                raise Forbidden(
                    f"revoking in the past ({when.isoformat()}) re-judges accepted signatures; only a"
                    " global admin token (admin scope, no namespace list) may",
                    key_id=key_id,
                )
            when = max(when, now)
        async with self._sessions() as s, s.begin():
            row = await s.get(SigningKey, key_id, with_for_update=True)
            if row is None or not await self._may_revoke(s, principal, row):
                raise NotFound(
                    f"no signing key {key_id!r} of publisher {principal.publisher!r}"
                    + ("" if not principal.is_admin else " or of one within this token's namespaces"),
                    key_id=key_id,
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
            await events.record(
                s,
                "key.revoked",
                actor=principal.publisher,
                payload={
                    "key_id": key_id,
                    "at": when.isoformat(),
                    "reason": reason,
                    "packs": list(packs[:20]),
                },
            )
            publisher = (
                await s.execute(select(Publisher.name).where(Publisher.id == row.publisher_id))
            ).scalar()
            return RevokeResult(key_view(row, publisher), int(res.rowcount or 0), packs)  # type: ignore[attr-defined]
