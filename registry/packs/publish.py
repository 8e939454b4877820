"""Publishing a ModelPack: verify every shard against the uploaded bytes, check signatures, store it all at once.

The manifest's other ``files`` (config.json, tokenizer.json...) are verified and stored exactly as shards
(``registry.packs.entries``); bytes no pack uses yet may be referenced only by a publisher who uploaded them.

One transaction holds the pack, its shards, state history, signature verdicts, the ``latest`` pointer
and the replicate/validate jobs. Publishing the same manifest again under the same model returns the
existing pack and writes nothing; two concurrent identical publishes end in one pack (the loser retries
and finds it). Under another model (a bare-named manifest publishes as any ``ns/name``) it is a new
listing with its own state and pointers; the content (shards, bytes, replicas, signatures) is shared.

Publish by CID: when some shards' bytes were never uploaded but IPFS nodes are configured, the pack is
stored ``received`` with a ``fetch`` job instead (``registry.packs.fetch``); pointers do not move
and replicate/validate are not enqueued until that job has every byte verified and makes it ``available``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.format.errors import InvalidManifest
from model_core.format.pack import ManifestLimits, ParsedManifest
from registry.accounts.auth import require_namespace
from registry.accounts.principal import Principal
from registry.db.base import utcnow
from registry.db.models import (
    Manifest,
    Model,
    Namespace,
    Pack,
    PackState,
    Shard,
    Signature,
    SignatureVerdict,
    SigningKey,
)
from registry.db.naming import model_named
from registry.errors import MissingShards, ModelNameMismatch
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import JobQueue
from registry.names import DEFAULT_TAG, ModelRef
from registry.packs.entries import entries_of, verify_entries
from registry.packs.hfcheck import ReadStored, check_hf_config
from registry.packs.lifecycle import add_received, make_available
from registry.packs.pointers import PointerMoved, check_settable
from registry.replication.shard_fetch import NodeDirectory
from registry.trust.errors import BadSignature
from registry.trust.keys import PublicKey
from registry.trust.signatures import (
    KnownKey,
    ManifestSignature,
    ReceiptTime,
    SignatureCheck,
    Verdict,
    embedded_signatures,
    parse_detached_signature,
    verify_manifest,
)

FETCHING = "fetching the shards that were not uploaded from the registry's IPFS nodes"
_VERDICTS = {
    Verdict.VALID: SignatureVerdict.VALID,
    Verdict.UNKNOWN_KEY: SignatureVerdict.UNKNOWN_KEY,
    Verdict.REVOKED: SignatureVerdict.REVOKED,
}
MAX_DETACHED = 16
RETRIES = 3


@dataclass(frozen=True, slots=True)
class PublishResult:
    cid: str
    created: bool
    state: str
    namespace: str
    model: str
    model_version: str
    pointers: dict[str, str] = field(default_factory=dict)
    signatures: list[dict[str, str]] = field(default_factory=list)


def check_binding(model_name: str, ref: ModelRef) -> None:
    """A manifest publishes only as the model it names: ``ns/model`` itself, a bare name as the model part.

    Signatures are over the manifest, so this binds them to the model too (as cosign binds a signature to
    its repository): a manifest signed for ``acme/experimental`` never counts as ``acme/prod``.
    """
    target = f"{ref.namespace}/{ref.model}"
    expected = target if "/" in model_name else ref.model
    # registry names are ASCII and unique case-blind (registry.names.name_key), so ASCII letters compare
    # case-blind (the seed's bare name `ProductionTransformer-RAGE` publishes as `acme/productiontransformer-rage`
    # or as `acme/ProductionTransformer-RAGE`); nothing else is folded
    if not model_name.isascii() or model_name.lower() != expected.lower():
        shown = model_name if len(model_name) <= 200 else model_name[:200] + "…"
        raise ModelNameMismatch(
            f"the manifest's model_name {shown!r} does not match {target!r}: a manifest publishes only as "
            f"the model it names ({target!r}, or the bare name {ref.model!r})",
            model_name=shown,
            target=target,
        )


class PublishService:
    """Turns a validated manifest plus uploaded shards into a pack."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        jobs: JobQueue | None,
        limits: ManifestLimits | None = None,
        on_moved: PointerMoved | None = None,
        on_published: Callable[[ModelRef], None] | None = None,
        nodes: NodeDirectory | None = None,
        max_detached: int = MAX_DETACHED,
        read_stored: ReadStored | None = None,
    ) -> None:
        self._sessions = sessions
        self._read_stored = read_stored  # an hf-llama pack's config.json is checked at publish with it
        self.max_detached = max_detached  # detached signatures accepted per publish
        self._nodes = nodes  # None: every shard must be uploaded (no publish by CID)
        self._jobs = jobs
        self.limits = limits or ManifestLimits()
        self._on_moved = on_moved
        self._on_published = on_published  # e.g. drop cached pointers of the model

    async def publish(
        self,
        principal: Principal,
        ref: ModelRef,
        parsed: ParsedManifest,
        *,
        detached: Sequence[Any] = (),
        tag: str | None = None,
        reason: str | None = None,
    ) -> PublishResult:
        check_binding(parsed.doc.model_name, ref)
        tags = [DEFAULT_TAG] + ([check_settable(tag)] if tag and tag != DEFAULT_TAG else [])
        if len(detached) > self.max_detached:
            raise InvalidManifest(
                f"at most {self.max_detached} detached signatures per publish", field="signatures"
            )
        sigs = [parse_detached_signature(json.dumps(d).encode(), str(i)) for i, d in enumerate(detached)]
        for attempt in range(RETRIES):
            try:
                result = await self._publish_once(principal, ref, parsed, sigs, tags, reason)
                if result.created and self._on_published is not None:
                    self._on_published(ref)
                return result
            except IntegrityError:
                if attempt == RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _publish_once(
        self,
        principal: Principal,
        ref: ModelRef,
        parsed: ParsedManifest,
        detached: list[ManifestSignature | SignatureCheck],
        tags: list[str],
        reason: str | None,
    ) -> PublishResult:
        async with self._sessions() as s, s.begin():
            ns = await require_namespace(s, principal, ref.namespace)
            existing = await self._existing(s, ns, ref, parsed.cid)
            if existing is not None:
                return existing
            content = await s.get(Manifest, parsed.cid)  # listed under another model already: shared
            entries = entries_of(parsed.doc)
            shard_blobs = await verify_entries(s, entries, principal, self._nodes)
            check_hf_config(parsed.doc, shard_blobs, self._read_stored)
            if any(b is None for b in shard_blobs) and self._jobs is None:
                raise MissingShards("this registry runs no job queue to fetch shards; upload them")
            checks = await self._check_signatures(s, parsed, detached)
            model = await self._model(s, ns, ref)
            ref = ModelRef(ns.name, model.name)  # the names as created (looked up case-insensitively)
            sizes = [
                b.size if b is not None else (spec.size or 0)  # a missing shard's size is required
                for spec, b in zip((e.spec for e in entries), shard_blobs, strict=True)
            ]
            total = sum(sizes)
            state = PackState.AVAILABLE if all(b is not None for b in shard_blobs) else PackState.RECEIVED
            if total > self.limits.pack_max_bytes:
                raise InvalidManifest(
                    f"the pack is {total} bytes, more than the limit of {self.limits.pack_max_bytes}",
                    field="shards",
                )
            now = utcnow()
            actor = principal.publisher
            pack = Pack(
                cid=parsed.cid,
                model_id=model.id,
                model_version=parsed.doc.model_version,
                published_by=principal.publisher_id,
                created_at=now,
                updated_at=now,
                content=content
                or Manifest(
                    cid=parsed.cid,
                    manifest=parsed.canonical,
                    total_size=total,
                    shard_count=len(parsed.doc.shards),
                    created_at=now,
                ),
            )
            await add_received(s, pack, actor, None if state is PackState.AVAILABLE else FETCHING)
            new_rows = zip(entries, sizes, strict=True) if content is None else ()  # else: stored
            for pos, (entry, size) in enumerate(new_rows):
                s.add(
                    Shard(
                        pack_cid=parsed.cid,
                        position=pos,
                        filename=entry.spec.filename,
                        cid=entry.key,
                        sha256=entry.spec.sha256_hex,
                        size=size,  # 0 until fetched when neither the bytes nor the manifest gave it
                        unixfs_profile=parsed.doc.profile_of(entry.spec),
                        role=entry.role,
                    )
                )
            stored = await self._stored_signatures(s, parsed.cid) if content is not None else set()
            verdicts = self._add_signatures(s, parsed.cid, checks, now, stored)
            moved: dict[str, str] = {}
            if state is PackState.RECEIVED:
                assert self._jobs is not None
                payload = {
                    "pack": parsed.cid,
                    "model_id": model.id,
                    "tags": tags,
                    "actor": actor,
                    "reason": reason or "published",
                }
                # one fetch job per listing: the first listing's keeps the plain key
                subject = parsed.cid if content is None else f"{parsed.cid}@{model.id}"
                await self._jobs.enqueue(
                    JobKind.FETCH, payload, dedupe_key=JobKind.FETCH.key(subject), session=s
                )
            else:
                moved = await make_available(
                    s, pack, actor=actor, tags=tags, reason=reason, jobs=self._jobs, on_moved=self._on_moved
                )
            return PublishResult(
                parsed.cid,
                True,
                pack.state.value,
                ref.namespace,
                ref.model,
                parsed.doc.model_version,
                moved,
                verdicts,
            )

    @staticmethod
    def _add_signatures(
        s: AsyncSession,
        cid: str,
        checks: list[tuple[SignatureCheck, ManifestSignature]],
        now: datetime,
        stored: set[tuple[str, str]],
    ) -> list[dict[str, str]]:
        """Signature rows (one per key and kind) with their verdicts; the verdicts as the API reports them.

        ``stored``: (key, kind) pairs the content holds already (another listing's publish): not added again.
        """
        seen: set[tuple[str, str]] = set()
        verdicts = []
        for c, sig in checks:
            kind = "detached" if c.source.startswith("detached") else "inline"
            if (c.key_id, kind) in seen:
                continue
            seen.add((c.key_id, kind))
            verdicts.append({"key_id": c.key_id, "kind": kind, "verdict": _VERDICTS[c.verdict].value})
            if (c.key_id, kind) in stored:
                continue
            s.add(
                Signature(
                    pack_cid=cid,
                    key_id=c.key_id,
                    kind=kind,
                    algorithm=sig.algorithm,
                    signature=sig.signature,
                    verdict=_VERDICTS[c.verdict],
                    verdict_reason=c.reason,
                    received_at=now,
                )
            )
        return verdicts

    @staticmethod
    async def _stored_signatures(s: AsyncSession, cid: str) -> set[tuple[str, str]]:
        rows = await s.execute(select(Signature.key_id, Signature.kind).where(Signature.pack_cid == cid))
        return {(k, kind) for k, kind in rows}

    async def _existing(
        self, s: AsyncSession, ns: Namespace, ref: ModelRef, cid: str
    ) -> PublishResult | None:
        """The result of publishing ``cid`` again under the model that lists it already (None: not listed there)."""
        row = (
            await s.execute(
                select(Pack, Model.name)
                .join(Model, Model.id == Pack.model_id)
                .where(Pack.cid == cid, Model.namespace_id == ns.id, model_named(ref.model))
            )
        ).one_or_none()
        if row is None:
            return None
        pack, name = row
        return PublishResult(pack.cid, False, pack.state.value, ns.name, name, pack.model_version)

    async def _model(self, s: AsyncSession, ns: Namespace, ref: ModelRef) -> Model:
        model = (
            await s.execute(select(Model).where(Model.namespace_id == ns.id, model_named(ref.model)))
        ).scalar_one_or_none()
        if model is None:
            model = Model(namespace_id=ns.id, name=ref.model)
            s.add(model)
            await s.flush()
        return model

    async def _check_signatures(
        self, s: AsyncSession, parsed: ParsedManifest, detached: list[ManifestSignature | SignatureCheck]
    ) -> list[tuple[SignatureCheck, ManifestSignature]]:
        items = [*embedded_signatures(parsed.data), *detached]
        if not items:
            return []
        for item in items:
            if isinstance(item, SignatureCheck):  # malformed entries are refused outright
                raise BadSignature(
                    f"signature by key {item.key_id or '(none)'} ({item.source}) is malformed: {item.reason}",
                    key_id=item.key_id,
                    verdict=item.verdict.value,
                )
        sigs = [i for i in items if isinstance(i, ManifestSignature)]
        rows = (
            await s.execute(select(SigningKey).where(SigningKey.key_id.in_({x.key_id for x in sigs})))
        ).scalars()
        keys = {r.key_id: KnownKey(PublicKey(r.public_key), r.revoked_at) for r in rows}
        checks = verify_manifest(
            parsed.data,
            keys,
            detached=[x for x in sigs if x.source.startswith("detached")],
            signing_time=ReceiptTime(utcnow()),
        )
        for c in checks:
            if c.verdict in (Verdict.BAD_SIGNATURE, Verdict.MALFORMED):
                raise BadSignature(
                    f"signature by key {c.key_id} ({c.source}) does not verify: {c.reason}",
                    key_id=c.key_id,
                    verdict=c.verdict.value,
                )
        return list(zip(checks, sigs, strict=True))
