"""Read side of the index: models by namespace or name prefix, versions of a model, pack detail, shards.

Every list is keyset-paginated (the cursor is the last row's sort key) so pages stay fast on large tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.errors import bounded, q
from registry.cache import CacheConfig, Memo, TtlCache
from registry.db.engine import readonly_session
from registry.db.fastread import FastReads, Row
from registry.db.listings import ModelSelector, find_listing
from registry.db.models import (
    Manifest,
    Model,
    Namespace,
    Pack,
    PackStateChange,
    Shard,
    ValidationReport,
)
from registry.errors import NotFound
from registry.names import ModelRef, name_key
from registry.packs import browse_reads as reads
from registry.packs.browse_reads import DETAIL_HISTORY
from registry.packs.pointers import model_id_of


@dataclass(frozen=True, slots=True)
class ModelSummary:
    namespace: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PackSummary:
    cid: str
    namespace: str
    model: str
    model_version: str
    state: str
    total_size: int
    shard_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ShardView:
    position: int
    filename: str
    cid: str
    sha256: str
    size: int
    unixfs_profile: str | None
    role: str = "shard"  # "shard" | "file"


@dataclass(frozen=True, slots=True)
class PackContent:
    """What depends on the CID alone: the manifest's canonical bytes and the shard rows made from them."""

    manifest: bytes
    shards: tuple[ShardView, ...]


# Kept per process: up to this many contents and manifest bytes (the least recently used go first).
CONTENT_MEMO_ENTRIES = 4096
CONTENT_MEMO_BYTES = 64 * 1024 * 1024


def content_memo() -> Memo[str, PackContent]:
    return Memo(CONTENT_MEMO_ENTRIES, CONTENT_MEMO_BYTES, lambda c: len(c.manifest) + 200 * len(c.shards))


@dataclass(frozen=True, slots=True)
class PackDetail:
    summary: PackSummary
    manifest: bytes
    state_reason: str | None
    history: list[dict[str, Any]]  # the newest DETAIL_HISTORY changes, oldest first
    history_before: int | None  # id of the oldest inlined change when older ones exist (the paging cursor)
    shards: list[ShardView]
    signatures: list[dict[str, Any]]
    replicas: dict[str, int]
    validation: dict[str, Any] | None
    pointers: list[str]


class BrowseService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        reads_: FastReads,
        cache: TtlCache[str, PackDetail] | None = None,
    ) -> None:
        self._sessions = sessions
        self._reads = reads_
        self.cache: TtlCache[str, PackDetail] = cache or TtlCache(CacheConfig(ttl_s=0))
        # A CID names its bytes: its content is read once and kept, never stale (no TTL, no invalidation).
        self.contents = content_memo()

    async def list_models(
        self, *, namespace: str | None, prefix: str | None, after: tuple[str, str] | None, limit: int
    ) -> tuple[ModelSummary, ...]:
        """The page (shared with identical requests: the same tuple while the index is unchanged)."""
        return await self._reads.coalesced(
            ("models", namespace, prefix, after, limit),
            lambda: self._list_models(namespace=namespace, prefix=prefix, after=after, limit=limit),
        )

    async def _list_models(
        self, *, namespace: str | None, prefix: str | None, after: tuple[str, str] | None, limit: int
    ) -> tuple[ModelSummary, ...]:
        if not prefix:
            rows = await reads.walk_models(self._reads, namespace=namespace, after=after, limit=limit)
            return tuple(ModelSummary(ns, name, at) for ns, name, at in rows)
        if not prefix.isascii():  # names are ASCII (registry.names): nothing starts otherwise
            return ()
        query = reads.models_query(namespace=namespace is not None, after=after is not None)
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        lo = prefix.lower()
        params: dict[str, Any] = {
            "limit": limit,
            "pattern": escaped.lower() + "%",  # case-blind
            "lo": lo,
            "hi": reads.prefix_end(lo),
        }
        if namespace is not None:
            params["ns"] = name_key(namespace)
        if after is not None:
            params["after_ns"], params["after_name"] = after
        rows = await self._reads.all(query, **params)
        return tuple(ModelSummary(ns, name, at) for ns, name, at in rows)

    async def list_versions(
        self, ref: ModelRef, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[PackSummary]:
        async with readonly_session(self._sessions) as s:
            mid = await model_id_of(s, ref)
            if mid is None:
                raise NotFound(f"no model {ref}", model=str(ref))
            ref = await self._ref_of(s, mid)  # the names as created (looked up case-blind)
            q = select(Pack).where(Pack.model_id == mid)
            if after is not None:
                q = q.where(
                    or_(Pack.created_at < after[0], and_(Pack.created_at == after[0], Pack.cid < after[1]))
                )
            rows = (
                await s.execute(q.order_by(Pack.created_at.desc(), Pack.cid.desc()).limit(limit))
            ).scalars()
            return [_summary(p, ref) for p in rows]

    async def _ref_of(self, s: AsyncSession, model_id: int) -> ModelRef:
        ns, name = (
            await s.execute(
                select(Namespace.name, Model.name)
                .join(Namespace, Namespace.id == Model.namespace_id)
                .where(Model.id == model_id)
            )
        ).one()
        return ModelRef(ns, name)

    async def manifest(self, cid: str) -> bytes:
        """The content's bytes: the same for every listing of ``cid``."""
        async with readonly_session(self._sessions) as s:
            data = (
                await s.execute(select(Manifest.manifest).where(Manifest.cid == cid))
            ).scalar_one_or_none()
        if data is None:
            raise NotFound(f"no pack {cid}", cid=cid)
        return data

    async def shard(self, cid: str, filename: str) -> ShardView:
        async with readonly_session(self._sessions) as s:
            row = (
                await s.execute(select(Shard).where(Shard.pack_cid == cid, Shard.filename == filename))
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(
                f"pack {cid} has no shard or file {q(filename)}", cid=cid, filename=bounded(filename)
            )
        return _shard(row)

    async def pack(self, cid: str, model: ModelSelector = None) -> PackDetail:
        """The detail of the listing of ``cid`` (under ``model`` when several models list it); cached for
        the read-cache TTL (state moves elsewhere show up within it)."""
        hit = self.cache.get(cid) if model is None else None
        if hit is not None:
            return hit
        if model is not None:
            return await self._reads.coalesced(("pack", cid, model), lambda: self._pack(cid, model))
        detail = await self._reads.batched("pack", cid, lambda: self._pack(cid, None), self._packs)
        if detail is None:  # not exactly one listing in the batch: alone, which words the error
            detail = await self._pack(cid, None)
        self.cache.put(cid, detail)
        return detail

    async def state_history(
        self, cid: str, *, before_id: int | None, limit: int, model: ModelSelector = None
    ) -> list[dict[str, Any]]:
        """A listing's state changes, newest first, ``limit`` at a time (keyset on the change id)."""
        async with readonly_session(self._sessions) as s:
            pack = await find_listing(s, cid, model)
            return [_change(h) for h in await _state_changes(s, pack, before_id, limit)]

    async def _packs(self, cids: list[str]) -> dict[str, PackDetail | None]:
        """Postgres: the batched detail of several packs (None where one must be read alone)."""
        content = any(self.contents.get(cid) is None for cid in cids)
        found = await reads.pack_details_many(self._reads, cids, content=content)
        return {cid: None if f is None else self._detail(cid, *f) for cid, f in found.items()}

    async def _pack(self, cid: str, model: ModelSelector) -> PackDetail:
        content = self.contents.get(cid)
        rows, d = await reads.pack_detail_rows(self._reads, cid, model, content=content is None)
        if len(rows) != 1:  # none, or several models list it: the ORM path words the error
            async with readonly_session(self._sessions) as s:
                await find_listing(s, cid, model)
            raise NotFound(f"no pack {cid}", cid=cid)  # it changed in between
        detail = self._detail(cid, rows[0], d, content)
        assert detail is not None  # the content was read with the rows when it was not kept
        return detail

    def _detail(
        self, cid: str, row: Row, d: dict[str, list[Row]], content: PackContent | None = None
    ) -> PackDetail | None:
        """The detail from its rows; None when its content was neither kept nor read (dropped meanwhile)."""
        content = content or self.contents.get(cid)
        if content is None:
            if "manifest" not in d:
                return None
            content = PackContent(d["manifest"][0][0], tuple(ShardView(*x) for x in d["shards"]))
            self.contents.put(cid, content)
        newest = d["history"]
        history = newest[:DETAIL_HISTORY][::-1]
        report = d["validation"][0] if d["validation"] else None
        return PackDetail(
            summary=PackSummary(row[1], row[7], row[8], row[3], row[4].value, row[9], row[10], row[6]),
            manifest=content.manifest,
            state_reason=row[5],
            history=[_change_row(h) for h in history],
            history_before=history[0][0] if len(newest) > DETAIL_HISTORY else None,
            shards=list(content.shards),
            signatures=[
                {
                    "key_id": key_id,
                    "kind": kind,
                    "verdict": verdict.value,
                    "reason": reason,
                    "received_at": received_at.isoformat(),
                }
                for key_id, kind, verdict, reason, received_at in d["signatures"]
            ],
            replicas={str(getattr(state, "value", state)): int(n) for state, n in d["replicas"]},
            validation=None
            if report is None
            else {
                "verdict": report[0],
                "reason": report[1],
                "started_at": report[2].isoformat(),
                "finished_at": report[3].isoformat() if report[3] else None,
            },
            pointers=[t for (t,) in d["tags"]],
        )


async def _state_changes(
    s: AsyncSession, pack: Pack, before_id: int | None, limit: int
) -> list[PackStateChange]:
    q = select(PackStateChange).where(
        PackStateChange.pack_cid == pack.cid, PackStateChange.model_id == pack.model_id
    )
    if before_id is not None:
        q = q.where(PackStateChange.id < before_id)
    return list((await s.execute(q.order_by(PackStateChange.id.desc()).limit(limit))).scalars())


def _change_row(h: Row) -> dict[str, Any]:
    return {
        "id": h[0],
        "from": h[1].value if h[1] else None,
        "to": h[2].value,
        "reason": h[3],
        "actor": h[4],
        "at": h[5].isoformat(),
    }


def _change(h: PackStateChange) -> dict[str, Any]:
    return {
        "id": h.id,
        "from": h.from_state.value if h.from_state else None,
        "to": h.to_state.value,
        "reason": h.reason,
        "actor": h.actor,
        "at": h.at.isoformat(),
    }


def _summary(p: Pack, ref: ModelRef) -> PackSummary:
    return PackSummary(
        p.cid,
        ref.namespace,
        ref.model,
        p.model_version,
        p.state.value,
        p.total_size,
        p.shard_count,
        p.created_at,
    )


def _shard(x: Shard) -> ShardView:
    return ShardView(x.position, x.filename, x.cid, x.sha256, x.size, x.unixfs_profile, x.role)


async def latest_validation_report(s: AsyncSession, cid: str) -> ValidationReport | None:
    """The newest validation report of a pack (None before its first validation)."""
    return (
        await s.execute(
            select(ValidationReport)
            .where(ValidationReport.pack_cid == cid)
            .order_by(ValidationReport.started_at.desc(), ValidationReport.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
