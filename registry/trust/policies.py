"""Each namespace's trust policy, and whether a pack's signatures satisfy it (the curation rule's question).

Signatures are judged against the key registry (registry.trust.key_registry) by the registry's
receipt time, so a revocation counts from its time on. Policy changes are audited. No HTTP in here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.accounts.principal import Principal
from registry.db.engine import readonly_session
from registry.db.listings import ModelSelector, find_listing
from registry.db.models import (
    AuditEvent,
    Model,
    Namespace,
    Publisher,
    Signature,
    SigningKey,
    TrustedKey,
)
from registry.db.naming import namespace_named
from registry.errors import BadRequest, Forbidden, NotFound
from registry.events import store as events
from registry.trust.drift_limits import parse_max_drift
from registry.trust.dsse import verify_envelope
from registry.trust.errors import DsseError
from registry.trust.key_registry import KeyRegistry, KeyView, keys_with_publishers
from registry.trust.keys import ALGORITHM, PublicKey
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


@dataclass(frozen=True, slots=True)
class PolicyView:
    namespace: str
    required_signatures: int
    keys: tuple[KeyView, ...]  # trusted one by one
    publishers: tuple[str, ...]  # every key of these publishers is trusted
    publisher_keys: tuple[KeyView, ...]  # those keys, resolved now
    max_drift: dict[str, float] | None = None  # registry/trust/drift_limits.py; None: no limit

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


async def evaluate_pack_trust(
    session: AsyncSession, pack_cid: str, model: ModelSelector = None
) -> TrustVerdict:
    """Judge every stored signature of the pack now, against today's keys, revocations and the policy of
    the namespace that lists it (``model``: which listing, when several models list the CID).

    Each signature is re-verified over the stored canonical manifest (so a key registered after the
    publish counts, and a revocation counts from its time on, by the receipt time). Curation (#8)
    may proceed only when ``satisfied``.

    Raises:
        NotFound: no such pack.
        AmbiguousPack: ``model`` is None and several models list the CID.
    """
    pack = await find_listing(session, pack_cid, model)
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
    return principal.may_admin(namespace)


class TrustService(KeyRegistry):
    """The key registry plus per-namespace trust policy and pack verdicts."""

    async def _policy(self, s: AsyncSession, namespace: str) -> tuple[Namespace, PolicyView]:
        ns = (await s.execute(select(Namespace).where(namespace_named(namespace)))).scalar_one_or_none()
        if ns is None:
            raise NotFound(f"no namespace {namespace!r}", namespace=namespace)
        rows = list((await s.execute(select(TrustedKey).where(TrustedKey.namespace_id == ns.id))).scalars())
        key_ids = {r.key_id for r in rows if r.key_id is not None}
        pub_ids = {r.publisher_id for r in rows if r.publisher_id is not None}
        keys = await keys_with_publishers(s, SigningKey.key_id.in_(key_ids)) if key_ids else []
        pubs = (
            sorted((await s.execute(select(Publisher.name).where(Publisher.id.in_(pub_ids)))).scalars())
            if pub_ids
            else []
        )
        pub_keys = await keys_with_publishers(s, SigningKey.publisher_id.in_(pub_ids)) if pub_ids else []
        return ns, PolicyView(
            ns.name, ns.required_signatures, tuple(keys), tuple(pubs), tuple(pub_keys), ns.max_drift or None
        )

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
        max_drift: dict[str, Any] | None = None,
    ) -> PolicyView:
        """Replaces the namespace's policy; an AuditEvent keeps the before and after.

        Raises:
            Forbidden (needs the admin scope for this namespace), NotFound, BadRequest (unknown key or
            publisher, a count out of range, or a policy no set of trusted keys could ever satisfy),
            InvalidDriftPolicy (422: ``max_drift`` with an unknown field or a number out of its bounds).
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
        drift = parse_max_drift(max_drift)
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
            ns.max_drift = drift.to_dict() if drift is not None else None
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
            await events.record(
                s,
                "policy.changed",
                namespace=namespace,
                actor=principal.publisher,
                payload={
                    "reason": reason,
                    "before": _policy_summary(before),
                    "after": _policy_summary(after),
                },
            )
            return after

    async def pack_trust(self, pack_cid: str, model: ModelSelector = None) -> TrustVerdict:
        async with readonly_session(self._sessions) as s:
            return await evaluate_pack_trust(s, pack_cid, model)


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
        "max_drift": p.max_drift,
    }
