"""Shard uploads: bytes streamed into the blockstore, hashed while they arrive, committed only when they match.

The expected CID (from the URL) fixes the UnixFS parameters; an optional sha256 is checked too. A body
over the size limit is cut off as soon as it passes the limit. A Blob row records each committed file.

Who may upload, and how much: the token's publisher must be able to publish somewhere (a member of a
namespace its token covers, or an admin); the bytes a publisher has stored that no pack references are
capped by ``upload_quota_bytes`` (counted at the start of an upload and while it streams, uploads in flight
included); uploads in flight are capped per publisher (429) and for the daemon (503), both with
``Retry-After``; a body that stalls longer than ``idle_timeout_s`` between chunks, or takes longer than
``total_timeout_s`` in all, is cut off (408) and leaves nothing behind. Blobs no pack references are
collected after a grace period (``collect_unreferenced``, the ``blob-gc`` job); until a pack references one,
only its uploader and global admins may read it (``readable_by``; others get 404).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.format.digest import PREFIX, Sha256Digest
from model_core.format.fields import check_profile
from pinner.blockstore import FsBlockstore
from pinner.cids import cid_str, parse_cid
from pinner.content_errors import BlockNotFound
from pinner.unixfs import params_for_cid
from registry.accounts.principal import Principal
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.models import Blob, Namespace, NamespaceMember, Shard
from registry.db.naming import namespaces_named
from registry.errors import BadRequest, Forbidden, PayloadTooLarge, RegistryError
from registry.jobs.protocol import ClaimedJob
from registry.metrics import record_ingest_bytes, record_upload_bytes
from registry.packs.lifecycle import record_blob

log = logging.getLogger("modelpack.blobs")
GC_BATCH = 1000  # unreferenced blobs looked at per collection run


@dataclass(frozen=True, slots=True)
class BlobConfig:
    max_upload_bytes: int = 64 * 1024**3
    upload_quota_bytes: int = 256 * 1024**3  # per publisher: stored bytes no pack references
    max_uploads_per_publisher: int = 4
    max_uploads_in_flight: int = 64
    idle_timeout_s: float = 60.0  # longest wait for the next chunk of a body
    total_timeout_s: float = 6 * 3600.0  # longest whole upload
    retry_after_s: int = 5  # Retry-After of a refused upload
    unreferenced_grace_s: float = 24 * 3600.0  # an unreferenced blob is kept this long after upload


@dataclass(frozen=True, slots=True)
class BlobInfo:
    cid: str
    sha256: str  # lowercase hex
    size: int
    unixfs_profile: str | None


class UploadNotAllowed(Forbidden):
    """Uploading needs a token whose publisher may publish in some namespace."""

    code = "upload_needs_namespace"


class UploadQuotaExceeded(PayloadTooLarge):
    """The publisher's stored bytes that no pack references would pass its upload quota."""

    code = "upload_quota_exceeded"


class UploadTimeout(RegistryError):
    """The upload body stalled or took too long; nothing was stored."""

    code = "upload_timeout"
    http_status = 408


class TooManyUploads(RegistryError):
    """This publisher has as many uploads in flight as it may; retry after ``Retry-After`` seconds."""

    code = "too_many_uploads"
    http_status = 429


class UploadsBusy(RegistryError):
    """The registry has as many uploads in flight as it takes; retry after ``Retry-After`` seconds."""

    code = "uploads_busy"
    http_status = 503


def normalize_sha256(value: str) -> str:
    """Accepts ``sha256:<hex>`` or bare hex; returns lowercase hex or raises BadRequest."""
    text = value.lower()
    try:
        digest = Sha256Digest.parse(text) if text.startswith(PREFIX) else Sha256Digest(text)
    except ValueError:
        raise BadRequest(
            f"sha256 {value[:100]!r} is not 64 hex digits (optionally prefixed 'sha256:')", sha256=value[:100]
        ) from None
    return digest.hex


@dataclass(slots=True)
class _Upload:
    """One upload in flight: its publisher, what the quota leaves it, and what it has read so far."""

    publisher: int
    quota_used: int | None  # the publisher's unreferenced stored bytes at the start; None: not counted
    seen: int = 0


class BlobService:
    """Streams shard bytes into the embedded store, records them, and collects the ones no pack uses."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: FsBlockstore,
        config: BlobConfig | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self.config = config or BlobConfig()
        self._in_flight: Counter[int] = Counter()  # uploads per publisher
        self._in_flight_bytes: Counter[int] = Counter()  # bytes read so far per publisher
        self._cids: Counter[str] = Counter()  # uploads per CID (never collected while uploading)
        self._collecting: set[str] = set()

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    async def get(self, cid: str) -> BlobInfo | None:
        key = cid_str(parse_cid(cid))
        async with readonly_session(self._sessions) as s:
            row = await s.get(Blob, key)
        if row is None or not self._store.has(key):
            return None
        return BlobInfo(row.cid, row.sha256, row.size, row.unixfs_profile)

    async def readable_by(self, cid: str, principal: Principal | None) -> bool:
        """Whether ``principal`` (None: anonymous) may read the bytes under ``cid`` (the read gate aside).

        A blob no pack references yet is private to its uploader (any of its publisher's tokens that may
        read) and global admins; once a shard of any pack references it, or for a CID that is no blob's
        root (manifests, blocks inside a file, content from nodes), the usual read rules apply.
        """
        key = cid_str(parse_cid(cid))
        referenced = exists().where(Shard.cid == key)
        q = select(Blob.uploaded_by).where(Blob.cid == key, ~referenced)
        async with readonly_session(self._sessions) as s:
            row = (await s.execute(q)).first()
        if row is None:
            return True
        if principal is None or not principal.may_read:
            return False
        return principal.is_global_admin or (row[0] is not None and row[0] == principal.publisher_id)

    async def ingest(
        self,
        principal: Principal,
        cid: str,
        chunks: AsyncIterable[bytes],
        *,
        sha256: str | None = None,
        profile: str | None = None,
        declared_size: int | None = None,
    ) -> tuple[BlobInfo, bool]:
        """Stores the bytes if they hash to ``cid`` (and ``sha256``); returns (info, created)."""
        if not ({"publish", "admin"} & principal.scopes):
            raise Forbidden("uploading shards needs a token with the publish scope")
        parsed = parse_cid(cid)
        key = cid_str(parsed)
        try:
            params = params_for_cid(parsed, check_profile(profile))
        except ValueError as e:
            raise BadRequest(str(e), profile=profile) from None
        want_sha = normalize_sha256(sha256) if sha256 else None
        limit = self.config.max_upload_bytes
        if declared_size is not None and declared_size > limit:
            raise PayloadTooLarge(
                f"the upload declares {declared_size} bytes, more than the limit of {limit}", limit=limit
            )
        await self._check_member(principal)
        upload = await self._admit(principal, key, declared_size)
        try:
            digest = await self._store.ingest_async(
                self._guarded(chunks, upload), params, expected_cid=parsed, expected_sha256=want_sha
            )
        finally:
            self._release(upload, key)
        record_ingest_bytes("upload", digest.size)
        info = BlobInfo(key, digest.sha256.hex(), digest.size, profile)
        created = await self._record(principal, info)
        return info, created

    async def _check_member(self, principal: Principal) -> None:
        """UploadNotAllowed unless the token could publish in some namespace."""
        if principal.is_admin and principal.namespaces is None:
            return  # a global admin
        if principal.namespaces is not None and not principal.namespaces:
            raise UploadNotAllowed("the API token covers no namespace, so it may not upload")
        if principal.is_admin:
            return  # an admin of the namespaces its token lists
        q = (
            select(Namespace.name)
            .join(NamespaceMember, NamespaceMember.namespace_id == Namespace.id)
            .where(NamespaceMember.publisher_id == principal.publisher_id)
        )
        if principal.namespaces is not None:
            q = q.where(namespaces_named(principal.namespaces))
        async with self._sessions() as s:
            if (await s.execute(q.limit(1))).first() is None:
                raise UploadNotAllowed(
                    f"publisher {principal.publisher!r} is a member of no namespace its token covers; "
                    "uploads need namespace membership (an admin adds it with `modelpack token create "
                    "--namespace NS`)",
                    publisher=principal.publisher,
                )

    async def _admit(self, principal: Principal, key: str, declared_size: int | None) -> _Upload:
        """Counts the upload in (refusing it over the caps); its quota baseline."""
        cfg, pub = self.config, principal.publisher_id
        retry = {"retry_after_s": cfg.retry_after_s}
        if key in self._collecting:
            raise UploadsBusy(f"the blob {key} is being collected; upload it again in a moment", **retry)
        if self.in_flight >= cfg.max_uploads_in_flight:
            raise UploadsBusy(f"the registry has {self.in_flight} uploads in flight, its limit", **retry)
        if self._in_flight[pub] >= cfg.max_uploads_per_publisher:
            raise TooManyUploads(
                f"publisher {principal.publisher!r} has {self._in_flight[pub]} uploads in flight, the limit "
                f"of {cfg.max_uploads_per_publisher}",
                limit=cfg.max_uploads_per_publisher,
                **retry,
            )
        upload = _Upload(pub, None)
        self._in_flight[pub] += 1
        self._cids[key] += 1
        try:
            async with self._sessions() as s:
                if await s.get(Blob, key) is None:  # bytes already stored add nothing to the quota
                    upload.quota_used = await self._unreferenced_bytes(s, pub)
            if upload.quota_used is not None and declared_size is not None:
                self._check_quota(upload, declared_size)
        except BaseException:
            self._release(upload, key)
            raise
        return upload

    def _release(self, upload: _Upload, key: str) -> None:
        self._in_flight[upload.publisher] -= 1
        self._in_flight_bytes[upload.publisher] -= upload.seen
        self._cids[key] -= 1
        for counter in (self._in_flight, self._in_flight_bytes, self._cids):
            for k in [k for k, v in counter.items() if v <= 0]:
                del counter[k]

    @staticmethod
    async def _unreferenced_bytes(s: AsyncSession, publisher: int) -> int:
        referenced = exists().where(Shard.cid == Blob.cid)
        q = select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.uploaded_by == publisher, ~referenced)
        return int((await s.execute(q)).scalar_one())

    def _check_quota(self, upload: _Upload, more: int) -> None:
        assert upload.quota_used is not None
        quota = self.config.upload_quota_bytes
        total = upload.quota_used + self._in_flight_bytes[upload.publisher] + more
        if total > quota:
            raise UploadQuotaExceeded(
                f"this upload would bring the publisher's stored bytes that no pack references to at least "
                f"{total}, over its quota of {quota}; publish a pack that uses them, or wait for them to be "
                "collected",
                quota=quota,
                used=upload.quota_used,
            )

    async def _guarded(self, chunks: AsyncIterable[bytes], upload: _Upload) -> AsyncIterator[bytes]:
        """The body, cut off over the size limit or the quota, or when it stalls or runs past its budget."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.total_timeout_s
        it = aiter(chunks)
        while True:
            left = deadline - loop.time()
            wait = min(cfg.idle_timeout_s, left)
            try:
                if wait <= 0:
                    raise TimeoutError
                async with asyncio.timeout(wait):
                    chunk = await anext(it)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if wait < cfg.idle_timeout_s:
                    msg = f"the upload took longer than {cfg.total_timeout_s:g}s in all"
                else:
                    msg = f"the upload body sent nothing for {cfg.idle_timeout_s:g}s"
                raise UploadTimeout(f"{msg}; nothing was stored", received=upload.seen) from None
            if upload.seen + len(chunk) > cfg.max_upload_bytes:
                raise PayloadTooLarge(
                    f"the upload is larger than the limit of {cfg.max_upload_bytes} bytes",
                    limit=cfg.max_upload_bytes,
                )
            if upload.quota_used is not None:
                self._check_quota(upload, len(chunk))
            upload.seen += len(chunk)
            record_upload_bytes(len(chunk))
            self._in_flight_bytes[upload.publisher] += len(chunk)
            yield chunk

    async def _record(self, principal: Principal, info: BlobInfo) -> bool:
        return await record_blob(
            self._sessions,
            info.cid,
            sha256_hex=info.sha256,
            size=info.size,
            unixfs_profile=info.unixfs_profile,
            uploaded_by=principal.publisher_id,
        )

    # -- collecting what no pack references --------------------------------------------------------

    async def handle_gc(self, job: ClaimedJob) -> None:
        """The ``blob-gc`` job."""
        await self.collect_unreferenced()

    async def collect_unreferenced(self) -> dict[str, int]:
        """Deletes blobs (row and stored file) no pack references, uploaded more than the grace period ago.

        Each deletion re-checks, in its own transaction with the blob row locked, that no shard references
        it (a publish reads the row ``FOR SHARE``), so a pack published meanwhile keeps its bytes. A blob
        being uploaded is skipped, and an upload of a blob being collected waits (503) until it is gone.
        """
        cutoff = utcnow() - timedelta(seconds=self.config.unreferenced_grace_s)
        unreferenced = ~exists().where(Shard.cid == Blob.cid)
        async with self._sessions() as s:
            candidates = list(
                (
                    await s.execute(
                        select(Blob.cid)
                        .where(Blob.created_at < cutoff, unreferenced)
                        .order_by(Blob.created_at)
                        .limit(GC_BATCH)
                    )
                ).scalars()
            )
        deleted = freed = 0
        for cid in candidates:
            if self._cids[cid] > 0:
                continue
            self._collecting.add(cid)
            try:
                size = await self._delete_if_unreferenced(cid, cutoff)
                if size is None:
                    continue
                try:
                    await asyncio.to_thread(self._store.delete_file, cid)
                except BlockNotFound:
                    pass
                deleted, freed = deleted + 1, freed + size
            finally:
                self._collecting.discard(cid)
        if deleted:
            log.info("blob gc: deleted %d unreferenced blob(s), %d bytes", deleted, freed)
        return {"candidates": len(candidates), "deleted": deleted, "bytes": freed}

    async def _delete_if_unreferenced(self, cid: str, cutoff: datetime) -> int | None:
        """Deletes the row if it is still old and unreferenced (checked with the row locked); its size."""
        async with self._sessions() as s, s.begin():
            row = (
                await s.execute(select(Blob).where(Blob.cid == cid).with_for_update())
            ).scalar_one_or_none()
            if row is None or row.created_at >= cutoff:
                return None
            if (await s.execute(select(Shard.id).where(Shard.cid == cid).limit(1))).first() is not None:
                return None
            size = row.size
            await s.execute(delete(Blob).where(Blob.cid == cid))
        return size
