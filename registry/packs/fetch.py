"""The ``fetch`` job: bring a ``received`` pack's missing shard bytes in from IPFS nodes, then make it available.

Publish by CID stores a pack whose shards were not uploaded as ``received``. This job streams each missing
shard from the configured nodes into the blockstore, which commits it only when the bytes hash to the
shard's CID (with the manifest's UnixFS parameters) and sha256. When every shard is present the pack
moves to ``available`` in one transaction: its pointers move (unless someone moved them since the publish),
and replicate/validate are enqueued as a direct publish does. A shard no node serves correctly is retried
with the queue's backoff; on the job's last attempt the pack is ``rejected`` naming the shard and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from multiformats import CID
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.format.digest import Sha256Digest
from model_core.format.pack import ManifestLimits
from pinner.content_errors import DigestMismatch
from pinner.unixfs import FileDigest, UnixfsParams
from registry.db.listings import find_listing, listings_of
from registry.db.models import Blob, Pack, PackState, Shard
from registry.errors import NotFound
from registry.jobs.protocol import ClaimedJob, JobQueue, RetryJob
from registry.metrics import record_ingest_bytes
from registry.names import DEFAULT_TAG, ModelRef
from registry.packs import shardcheck
from registry.packs.lifecycle import make_available, model_ref_of, record_blob, set_state
from registry.packs.pointers import PointerMoved
from registry.replication.shard_fetch import ShardFetcher, ShardSource

log = logging.getLogger("modelpack.fetch")
JobHandler = Callable[[ClaimedJob], Coroutine[Any, Any, None]]
ACTOR = "registry"
MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class FetchConfig:
    node_timeout_s: float = (
        600.0  # one node's whole stream of one shard; a stalled node must not hold the job
    )
    pack_max_bytes: int = ManifestLimits().pack_max_bytes  # cap for a shard whose manifest gives no size

    def __post_init__(self) -> None:
        if self.node_timeout_s <= 0 or self.pack_max_bytes <= 0:
            raise ValueError("node_timeout_s and pack_max_bytes must be positive")


class ShardStore(Protocol):
    """The embedded blockstore, as the fetch needs it: a verified, all-or-nothing ingest."""

    async def ingest_async(
        self,
        chunks: AsyncIterable[bytes],
        params: UnixfsParams | None = None,
        expected_cid: CID | str | None = None,
        expected_sha256: bytes | str | None = None,
    ) -> FileDigest: ...


class ManifestContradicted(Exception):
    """A shard's CID and declared sha256 cannot both hold: no retry can help."""


class TooLarge(Exception):
    """A node sent more bytes than the shard can have."""


async def _capped(source: ShardSource, cid: str, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in source.cat(cid):
        seen += len(chunk)
        if seen > limit:
            raise TooLarge(
                f"sent more than {limit} bytes (the shard's size, or what the pack's budget leaves)"
            )
        yield chunk


class ShardFetchService:
    """Runs ``fetch`` jobs (one per received pack, deduplicated as ``fetch:<cid>``)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: ShardStore,
        fetcher: ShardFetcher,
        jobs: JobQueue | None,
        config: FetchConfig | None = None,
        on_moved: PointerMoved | None = None,
        on_changed: Callable[[ModelRef, str], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._fetcher = fetcher
        self._jobs = jobs
        self.config = config or FetchConfig()
        self._on_moved = on_moved
        self._on_changed = (
            on_changed  # (model, pack cid) after a state change: drop cached pointers, pack JSON
        )

    async def handle_fetch(self, job: ClaimedJob) -> None:
        """Fetch what is missing; make the pack available, retry, or (last attempt) reject it.

        Raises:
            RetryJob: a shard is still missing and the job has attempts left.
        """
        cid = str(job.payload["pack"])
        mid = _model_id(job.payload)
        async with self._sessions() as s:
            pack = await _listing(s, cid, mid)
            if pack is None or pack.state is not PackState.RECEIVED:
                return  # deleted, or already decided (an earlier attempt, or an upload raced us)
            publisher = pack.published_by
            shards = list(
                (
                    await s.execute(select(Shard).where(Shard.pack_cid == cid).order_by(Shard.position))
                ).scalars()
            )
            have = set(
                (await s.execute(select(Blob.cid).where(Blob.cid.in_({sh.cid for sh in shards})))).scalars()
            )
        failures: list[tuple[Shard, str]] = []
        sizes = {sh.id: sh.size for sh in shards}  # known sizes (0: unknown until fetched)
        for sh in shards:
            if sh.cid in have:
                continue
            # Never read more than the shard's size, nor more than the pack's budget leaves for it.
            budget = self.config.pack_max_bytes - (sum(sizes.values()) - sizes[sh.id])
            limit = min(sh.size, budget) if sh.size > 0 else budget
            if budget < sh.size or budget < 0:
                await self._reject(
                    cid, mid, f"the pack is larger than the limit of {self.config.pack_max_bytes} bytes"
                )
                return
            try:
                problem, size = await self._fetch_one(sh, publisher, limit)
            except ManifestContradicted as e:
                await self._reject(cid, mid, f"shard {sh.filename!r} ({sh.cid}): {e}")
                return
            if problem is None:
                have.add(sh.cid)
                sizes[sh.id] = size
            else:
                failures.append((sh, problem))
        if failures:
            sh, problem = failures[0]
            why = f"shard {sh.filename!r} ({sh.cid}): {problem}"
            if len(failures) > 1:
                why += f" (and {len(failures) - 1} more shard(s) missing)"
            if job.attempts < job.max_attempts:
                raise RetryJob(why)
            await self._reject(
                cid, mid, f"no IPFS node served verified bytes after {job.attempts} attempts: {why}"
            )
            return
        await self._make_available(cid, job.payload)

    async def _fetch_one(self, sh: Shard, publisher: int | None, limit: int) -> tuple[str | None, int]:
        """(None, size) once the shard's bytes (at most ``limit``) are in the store and recorded; else what
        each node did wrong.

        Raises:
            ManifestContradicted: a node served the CID's bytes and their sha256 is not the manifest's.
        """
        want = shardcheck.expected_cid(sh.cid)
        params = shardcheck.unixfs_params(want, sh.unixfs_profile)
        declared = Sha256Digest(sh.sha256)
        errors: list[str] = []
        async for name, source in self._fetcher.sources():
            try:
                async with asyncio.timeout(self.config.node_timeout_s):
                    digest = await self._store.ingest_async(
                        _capped(source, sh.cid, limit),
                        params,
                        expected_cid=want,
                        expected_sha256=declared.hex,
                    )
            except DigestMismatch as e:
                if e.details.get("expected") == declared.hex:  # the CID held: these are the CID's only bytes
                    raise ManifestContradicted(
                        f"the bytes with this CID (served by {name}) have sha256:{e.details.get('actual')}, "
                        f"but the manifest declares {declared}"
                    ) from None
                errors.append(f"{name}: {e.message}")
                continue
            except TimeoutError:
                errors.append(f"{name}: no complete answer within {self.config.node_timeout_s:g}s")
                continue
            except Exception as e:  # one node failing is not the end: try the next
                errors.append(f"{name}: {getattr(e, 'message', None) or e or type(e).__name__}")
                continue
            await self._record(sh.cid, digest, sh.unixfs_profile, publisher)
            record_ingest_bytes("fetch", digest.size)
            log.info("fetched shard %s (%d bytes) from %s", sh.cid, digest.size, name)
            return None, digest.size
        return "; ".join(errors) or "no IPFS node is configured and up", 0

    async def _record(self, cid: str, digest: FileDigest, profile: str | None, publisher: int | None) -> None:
        await record_blob(
            self._sessions,
            cid,
            sha256_hex=digest.sha256_hex,
            size=digest.size,
            unixfs_profile=profile,
            uploaded_by=publisher,
        )

    async def _reject(self, cid: str, model_id: int | None, reason: str) -> None:
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 3] + "..."
        async with self._sessions() as s, s.begin():
            pack = await _listing(s, cid, model_id, for_update=True)
            if pack is None or pack.state is not PackState.RECEIVED:
                return
            await set_state(s, pack, PackState.REJECTED, reason, ACTOR)
            ref = await model_ref_of(s, pack.model_id)
        log.warning("pack %s rejected: %s", cid, reason)
        self._changed(ref, cid)

    def _changed(self, ref: ModelRef, cid: str) -> None:
        if self._on_changed is not None:
            self._on_changed(ref, cid)

    async def _make_available(self, cid: str, payload: dict[str, Any]) -> None:
        async with self._sessions() as s, s.begin():
            pack = await _listing(s, cid, _model_id(payload), for_update=True)
            if pack is None or pack.state is not PackState.RECEIVED:
                return
            ref = await model_ref_of(s, pack.model_id)
            shards = list((await s.execute(select(Shard).where(Shard.pack_cid == cid))).scalars())
            found = select(Blob).where(Blob.cid.in_({sh.cid for sh in shards}))
            problem = self._settle_sizes(shards, {b.cid: b for b in (await s.execute(found)).scalars()})
            if problem is not None:
                await set_state(s, pack, PackState.REJECTED, problem, ACTOR)
                log.warning("pack %s rejected: %s", cid, problem)
            else:
                pack.content.total_size = sum(sh.size for sh in shards)
                await make_available(
                    s,
                    pack,
                    actor=str(payload.get("actor") or ACTOR),
                    tags=[str(tag) for tag in payload.get("tags") or [DEFAULT_TAG]],
                    reason=str(payload.get("reason") or "published"),
                    jobs=self._jobs,
                    on_moved=self._on_moved,
                )
        self._changed(ref, cid)

    def _settle_sizes(self, shards: list[Shard], blobs: dict[str, Blob]) -> str | None:
        """Fills each shard's size from its verified bytes; what is wrong with the pack, if anything."""
        for sh in shards:
            blob = blobs[sh.cid]
            # An upload of the same CID may have landed meanwhile: its sha256 must still be the manifest's.
            declared = Sha256Digest(sh.sha256)
            if not declared.matches(blob.sha256):
                return (
                    f"shard {sh.filename!r} declares {declared} but the bytes with CID {sh.cid} "
                    f"have {Sha256Digest(blob.sha256)}"
                )
            sh.size = blob.size
        total = sum(sh.size for sh in shards)
        if total > self.config.pack_max_bytes:
            return f"the pack is {total} bytes, more than the limit of {self.config.pack_max_bytes}"
        return None


def _model_id(payload: dict[str, Any]) -> int | None:
    mid = payload.get("model_id")
    return mid if isinstance(mid, int) else None


async def _listing(
    s: AsyncSession, cid: str, model_id: int | None, *, for_update: bool = False
) -> Pack | None:
    """The job's listing; a job queued before listings carried a model means the CID's first listing."""
    if model_id is None:
        return next(iter(await listings_of(s, cid, for_update=for_update)), None)
    try:
        return await find_listing(s, cid, model_id, for_update=for_update)
    except NotFound:
        return None
