"""Publishers' signing keys, each namespace's trust policy, and whether a pack's signatures satisfy it.

Signing time is the registry's receipt time. A signer's own timestamp proves nothing (whoever holds a
stolen key writes any date), so a signature counts as made no later than ``Signature.received_at``,
when the registry first stored it. Revoking a key at time T invalidates every signature of that key
the registry received at or after T and leaves older ones valid. Only admins may set T in the past:
it re-judges signatures the registry already accepted. No HTTP in here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.models import (
    AuditEvent,
    Model,
    Namespace,
    NamespaceMember,
    Pack,
    Publisher,
    Signature,
    SignatureVerdict,
    SigningKey,
    TrustedKey,
)
from registry.errors import BadRequest, Conflict, Forbidden, NotFound
from registry.services.auth import Principal
from registry.trust.dsse import verify_envelope
from registry.trust.errors import DsseError
from registry.trust.keys import ALGORITHM, PublicKey, parse_public_key
from registry.trust.policy import MAX_REQUIRED, NamespacePolicy
from registry.trust.policy import TrustedKey as PolicyKey
from registry.trust.signatures import (
    KnownKey,
    ManifestSignature,
    ReceiptTime,
    SignatureCheck,
    Verdict,
    check_signature,
    signing_payload,
)


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


@dataclass(frozen=True, slots=True)
class PolicyView:
    namespace: str
    required_signatures: int
    keys: tuple[KeyView, ...]  # trusted one by one
    publishers: tuple[str, ...]  # every key of these publishers is trusted
    publisher_keys: tuple[KeyView, ...]  # those keys, resolved now

    def namespace_policy(self) -> NamespacePolicy:
        """The same policy as the offline file format sees it (publishers' keys spelled out)."""
        seen: dict[str, PolicyKey] = {}
        for k in (*self.keys, *self.publisher_keys):
            seen.setdefault(
                k.key_id,
                PolicyKey(PublicKey(base64.b64decode(k.public_key)), k.publisher or "", k.revoked_at),
            )
        return NamespacePolicy(
            keys=tuple(seen.values()),
            publishers=self.publishers,
            required_signatures=max(1, self.required_signatures),
        )


@dataclass(frozen=True, slots=True)
class SignatureJudgement:
    key_id: str
    kind: str
    verdict: str
    reason: str
    trusted: bool
    received_at: datetime
    signature: str  # base64


@dataclass(frozen=True, slots=True)
class TrustVerdict:
    """What the curation rule asks: do this pack's signatures satisfy its namespace's policy?"""

    pack_cid: str
    namespace: str
    satisfied: bool
    required: int
    trusted_valid: tuple[str, ...]
    reasons: tuple[str, ...]
    signatures: tuple[SignatureJudgement, ...] = field(default_factory=tuple)


def _key_view(k: SigningKey, publisher: str | None) -> KeyView:
    return KeyView(
        k.key_id,
        publisher,
        k.algorithm,
        base64.b64encode(k.public_key).decode("ascii"),
        k.registered_at,
        k.revoked_at,
        k.revocation_reason,
    )


async def _keys_with_publishers(session: AsyncSession, where: Any) -> list[KeyView]:
    rows = await session.execute(
        select(SigningKey, Publisher.name)
        .outerjoin(Publisher, Publisher.id == SigningKey.publisher_id)
        .where(where)
        .order_by(SigningKey.key_id)
    )
    return [_key_view(k, name) for k, name in rows]


def _judge(
    payload: bytes, manifest: dict[str, Any], row: Signature, keys: dict[str, KnownKey]
) -> list[SignatureCheck]:
    at = ReceiptTime(row.received_at)
    if row.kind == "dsse":
        if row.envelope is None:
            return [SignatureCheck(row.key_id, Verdict.MALFORMED, "DSSE row without an envelope", "dsse")]
        try:
            env = verify_envelope(json.dumps(row.envelope).encode(), manifest, keys, at)
        except DsseError as e:
            return [SignatureCheck(row.key_id, Verdict.MALFORMED, e.message, "dsse")]
        if env.mismatches:
            return [SignatureCheck(row.key_id, Verdict.BAD_SIGNATURE, "; ".join(env.mismatches), "dsse")]
        return [c for c in env.signatures if c.key_id == row.key_id]
    sig = ManifestSignature(row.key_id, bytes(row.signature), row.algorithm, row.kind)
    if row.algorithm != ALGORITHM:
        return [SignatureCheck(row.key_id, Verdict.MALFORMED, f"algorithm {row.algorithm!r}", row.kind)]
    return [check_signature(payload, sig, keys, at)]


async def evaluate_pack_trust(session: AsyncSession, pack_cid: str) -> TrustVerdict:
    """Judge every stored signature of the pack now, against today's keys, revocations and policy.

    Each signature is re-verified over the stored canonical manifest (so a key registered after the
    publish counts, and a revocation counts from its time on, by the receipt time). Curation (#8)
    may proceed only when ``satisfied``.

    Raises:
        NotFound: no such pack.
    """
    pack = await session.get(Pack, pack_cid)
    if pack is None:
        raise NotFound(f"no pack {pack_cid}", cid=pack_cid)
    ns = (
        await session.execute(
            select(Namespace).join(Model, Model.namespace_id == Namespace.id).where(Model.id == pack.model_id)
        )
    ).scalar_one()
    trusted_rows = (
        await session.execute(select(TrustedKey).where(TrustedKey.namespace_id == ns.id))
    ).scalars()
    trusted: set[str] = set()
    publisher_ids: set[int] = set()
    for t in trusted_rows:
        if t.key_id is not None:
            trusted.add(t.key_id)
        if t.publisher_id is not None:
            publisher_ids.add(t.publisher_id)
    if publisher_ids:
        trusted |= set(
            (
                await session.execute(
                    select(SigningKey.key_id).where(SigningKey.publisher_id.in_(publisher_ids))
                )
            ).scalars()
        )
    rows = list(
        (
            await session.execute(
                select(Signature).where(Signature.pack_cid == pack_cid).order_by(Signature.id)
            )
        )
        .scalars()
        .all()
    )
    key_rows = (
        await session.execute(select(SigningKey).where(SigningKey.key_id.in_({r.key_id for r in rows})))
    ).scalars()
    keys = {k.key_id: KnownKey(PublicKey(bytes(k.public_key)), k.revoked_at) for k in key_rows}
    manifest = json.loads(pack.manifest)
    payload = signing_payload(manifest)
    judged: list[SignatureJudgement] = []
    reasons: list[str] = []
    for row in rows:
        for c in _judge(payload, manifest, row, keys):
            is_trusted = c.key_id in trusted
            judged.append(
                SignatureJudgement(
                    c.key_id,
                    row.kind,
                    c.verdict.value,
                    c.reason,
                    is_trusted,
                    row.received_at,
                    base64.b64encode(bytes(row.signature)).decode("ascii"),
                )
            )
            if c.verdict is not Verdict.VALID:
                reasons.append(f"signature by {c.key_id} ({row.kind}): {c.verdict.value}: {c.reason}")
            elif not is_trusted:
                reasons.append(
                    f"signature by {c.key_id} is valid but namespace {ns.name!r} does not trust it"
                )
    valid = tuple(sorted({j.key_id for j in judged if j.verdict == Verdict.VALID.value and j.trusted}))
    required = ns.required_signatures
    satisfied = len(valid) >= required
    if not rows:
        reasons.insert(0, "the pack carries no signatures")
    if not satisfied:
        reasons.append(
            f"{len(valid)} valid signature(s) by keys namespace {ns.name!r} trusts; its policy requires {required}"
        )
    return TrustVerdict(pack_cid, ns.name, satisfied, required, valid, tuple(reasons), tuple(judged))


def _may_administer(principal: Principal, namespace: str) -> bool:
    return principal.is_admin and (principal.namespaces is None or namespace in principal.namespaces)


class TrustService:
    """The key registry and per-namespace trust policy; every change is audited."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], config: TrustConfig = TrustConfig()
    ) -> None:
        self._sessions = sessions
        self.config = config

    # -- keys ------------------------------------------------------------------------------------

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
                    return _key_view(existing, principal.publisher), False
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
                return _key_view(row, principal.publisher), True
        except IntegrityError:  # a concurrent registration of the same key: read what won
            async with readonly_session(self._sessions) as s:
                view = await self._get(s, pk.key_id)
            if view.publisher != principal.publisher:
                raise Conflict(
                    f"key {pk.key_id} is registered to another publisher", key_id=pk.key_id
                ) from None
            return view, False

    async def _get(self, s: AsyncSession, key_id: str) -> KeyView:
        found = await _keys_with_publishers(s, SigningKey.key_id == key_id)
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
            return (await _keys_with_publishers(s, cond))[:limit]

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
            return RevokeResult(_key_view(row, publisher), int(res.rowcount or 0), packs)  # type: ignore[attr-defined]

    # -- policy ----------------------------------------------------------------------------------

    async def _policy(self, s: AsyncSession, namespace: str) -> tuple[Namespace, PolicyView]:
        ns = (await s.execute(select(Namespace).where(Namespace.name == namespace))).scalar_one_or_none()
        if ns is None:
            raise NotFound(f"no namespace {namespace!r}", namespace=namespace)
        rows = list((await s.execute(select(TrustedKey).where(TrustedKey.namespace_id == ns.id))).scalars())
        key_ids = {r.key_id for r in rows if r.key_id is not None}
        pub_ids = {r.publisher_id for r in rows if r.publisher_id is not None}
        keys = await _keys_with_publishers(s, SigningKey.key_id.in_(key_ids)) if key_ids else []
        pubs = (
            sorted((await s.execute(select(Publisher.name).where(Publisher.id.in_(pub_ids)))).scalars())
            if pub_ids
            else []
        )
        pub_keys = await _keys_with_publishers(s, SigningKey.publisher_id.in_(pub_ids)) if pub_ids else []
        return ns, PolicyView(ns.name, ns.required_signatures, tuple(keys), tuple(pubs), tuple(pub_keys))

    async def get_policy(self, namespace: str) -> PolicyView:
        async with readonly_session(self._sessions) as s:
            return (await self._policy(s, namespace))[1]

    async def set_policy(
        self,
        principal: Principal,
        namespace: str,
        *,
        keys: Sequence[str],
        publishers: Sequence[str],
        required_signatures: int = 1,
        reason: str | None = None,
    ) -> PolicyView:
        """Replaces the namespace's policy; an AuditEvent keeps the before and after.

        Raises:
            Forbidden (needs the admin scope for this namespace), NotFound, BadRequest (unknown key or
            publisher, a count out of range, or a policy no set of trusted keys could ever satisfy).
        """
        if not _may_administer(principal, namespace):
            raise Forbidden(
                f"changing the trust policy of {namespace!r} needs a token with the admin scope for it",
                namespace=namespace,
            )
        key_ids = _unique(keys, "keys", self.config.max_policy_keys)
        pub_names = _unique(publishers, "publishers", self.config.max_policy_publishers)
        if not 1 <= required_signatures <= MAX_REQUIRED:
            raise BadRequest(
                f"required_signatures must be from 1 to {MAX_REQUIRED}, got {required_signatures}",
                field="required_signatures",
            )
        if reason is not None and len(reason) > self.config.max_reason_len:
            raise BadRequest(f"the reason is longer than {self.config.max_reason_len} characters")
        async with self._sessions() as s, s.begin():
            ns, before = await self._policy(s, namespace)
            found = set(
                (await s.execute(select(SigningKey.key_id).where(SigningKey.key_id.in_(key_ids)))).scalars()
            )
            missing = [k for k in key_ids if k not in found]
            if missing:
                raise BadRequest(f"key {missing[0]!r} is not registered", key_id=missing[0])
            pubs: dict[str, int] = dict(
                (
                    await s.execute(select(Publisher.name, Publisher.id).where(Publisher.name.in_(pub_names)))
                ).all()
            )
            unknown = [p for p in pub_names if p not in pubs]
            if unknown:
                raise BadRequest(f"publisher {unknown[0]!r} does not exist", publisher=unknown[0])
            await s.execute(delete(TrustedKey).where(TrustedKey.namespace_id == ns.id))
            s.add_all(TrustedKey(namespace_id=ns.id, key_id=k) for k in key_ids)
            s.add_all(TrustedKey(namespace_id=ns.id, publisher_id=pubs[p]) for p in pub_names)
            ns.required_signatures = required_signatures
            await s.flush()
            _, after = await self._policy(s, namespace)
            s.add(
                AuditEvent(
                    actor=principal.publisher,
                    action="trust_policy.set",
                    subject=f"namespace:{namespace}",
                    reason=reason,
                    details={"before": _policy_summary(before), "after": _policy_summary(after)},
                )
            )
            return after

    async def pack_trust(self, pack_cid: str) -> TrustVerdict:
        async with readonly_session(self._sessions) as s:
            return await evaluate_pack_trust(s, pack_cid)

    async def is_member(self, publisher_id: int, namespace: str) -> bool:
        async with readonly_session(self._sessions) as s:
            row = await s.execute(
                select(NamespaceMember)
                .join(Namespace, Namespace.id == NamespaceMember.namespace_id)
                .where(Namespace.name == namespace, NamespaceMember.publisher_id == publisher_id)
            )
            return row.first() is not None


def _unique(values: Iterable[str], what: str, limit: int) -> list[str]:
    out = list(dict.fromkeys(values))
    if len(out) > limit:
        raise BadRequest(f"a policy lists at most {limit} {what}", field=what)
    if any(not isinstance(v, str) or not v or len(v) > 256 for v in out):
        raise BadRequest(f"every entry of {what} must be a non-empty string", field=what)
    return out


def _policy_summary(p: PolicyView) -> dict[str, Any]:
    return {
        "required_signatures": p.required_signatures,
        "keys": sorted(k.key_id for k in p.keys),
        "publishers": list(p.publishers),
    }
