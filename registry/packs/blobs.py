"""Shard uploads: bytes streamed into the blockstore, hashed while they arrive, committed only when they match.

The expected CID (from the URL) fixes the UnixFS parameters; an optional sha256 is checked too. A body
over the size limit is cut off as soon as it passes the limit. A Blob row records each committed file.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.format.digest import PREFIX, Sha256Digest
from model_core.format.fields import check_profile
from pinner.blockstore import FsBlockstore
from pinner.cids import cid_str, parse_cid
from pinner.unixfs import params_for_cid
from registry.accounts.auth import Principal
from registry.db.models import Blob
from registry.errors import BadRequest, Forbidden, PayloadTooLarge
from registry.packs.lifecycle import record_blob


@dataclass(frozen=True, slots=True)
class BlobConfig:
    max_upload_bytes: int = 64 * 1024**3


@dataclass(frozen=True, slots=True)
class BlobInfo:
    cid: str
    sha256: str  # lowercase hex
    size: int
    unixfs_profile: str | None


def normalize_sha256(value: str) -> str:
    """Accepts ``sha256:<hex>`` or bare hex; returns lowercase hex or raises BadRequest."""
    text = value.lower()
    try:
        digest = Sha256Digest.parse(text) if text.startswith(PREFIX) else Sha256Digest(text)
    except ValueError:
        raise BadRequest(
            f"sha256 {value!r} is not 64 hex digits (optionally prefixed 'sha256:')", sha256=value
        ) from None
    return digest.hex


async def _capped(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"the upload is larger than the limit of {limit} bytes", limit=limit)
        yield chunk


class BlobService:
    """Streams shard bytes into the embedded store and records them."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: FsBlockstore,
        config: BlobConfig | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self.config = config or BlobConfig()

    async def get(self, cid: str) -> BlobInfo | None:
        key = cid_str(parse_cid(cid))
        async with self._sessions() as s:
            row = await s.get(Blob, key)
        if row is None or not self._store.has(key):
            return None
        return BlobInfo(row.cid, row.sha256, row.size, row.unixfs_profile)

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
        digest = await self._store.ingest_async(
            _capped(chunks, limit), params, expected_cid=parsed, expected_sha256=want_sha
        )
        info = BlobInfo(key, digest.sha256.hex(), digest.size, profile)
        created = await self._record(principal, info)
        return info, created

    async def _record(self, principal: Principal, info: BlobInfo) -> bool:
        return await record_blob(
            self._sessions,
            info.cid,
            sha256_hex=info.sha256,
            size=info.size,
            unixfs_profile=info.unixfs_profile,
            uploaded_by=principal.publisher_id,
        )
