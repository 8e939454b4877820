"""A manifest's stored entries: its weight ``shards`` then its other ``files``, verified alike at publish.

Both become rows of ``shards`` (``role`` 'shard' or 'file', the files' positions after the shards'), so
everything that works on a pack's shard rows (fetch by CID, replication, GC, serving by name, the gate's
folder, pull) handles files exactly as shards.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from model_core.format.errors import InvalidManifest
from model_core.format.schema import ManifestDoc, ShardSpec
from pinner.cids import cid_str, parse_cid
from registry.accounts.principal import Principal
from registry.db.models import Blob, BlobUploader, Shard
from registry.errors import Forbidden, MissingShards, ShardMismatch
from registry.replication.shard_fetch import NodeDirectory

SHARD = "shard"
FILE = "file"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored file of a manifest: a weight shard or another file, with its normalised CID."""

    spec: ShardSpec
    role: str  # SHARD | FILE
    key: str  # the CID as the index keys it

    @property
    def what(self) -> str:
        return "shard" if self.role == SHARD else "file"


def entries_of(doc: ManifestDoc) -> list[Entry]:
    """The shards, then the files, in manifest order (their row positions)."""
    out = [Entry(sh, SHARD, cid_str(parse_cid(sh.cid))) for sh in doc.shards]
    out += [Entry(f, FILE, cid_str(parse_cid(f.cid))) for f in doc.files or ()]
    return out


async def verify_entries(
    s: AsyncSession, entries: list[Entry], principal: Principal, nodes: NodeDirectory | None
) -> list[Blob | None]:
    """The Blob of each entry, None for one whose bytes a node must serve (refused when no node can).

    Raises:
        MissingShards: some bytes are not uploaded and no IPFS node is configured.
        InvalidManifest: a missing entry gives no size (a fetch is bounded by it).
        ShardMismatch: the stored bytes with an entry's CID have another sha256 or size.
        Forbidden: an entry names bytes another publisher uploaded that no pack references yet.
    """
    keys = {e.key for e in entries}
    # FOR SHARE (Postgres): gc deletes a blob row first, so it waits for this publish and then sees its shards
    query = select(Blob).where(Blob.cid.in_(keys)).with_for_update(read=True)
    found = {b.cid: b for b in (await s.execute(query)).scalars()}
    missing = [e.spec.filename for e in entries if e.key not in found]
    if missing and (nodes is None or not await nodes.has_sources(s)):
        raise MissingShards(
            f"{len(missing)} shard(s) or file(s) are not uploaded yet (first: {missing[0]!r}) and no IPFS "
            "node is configured to fetch them from; PUT their bytes to /v1/blobs/{cid} or add a node, "
            "then publish again",
            missing=missing[:100],
        )
    await _check_owned(s, entries, found, principal)
    out: list[Blob | None] = []
    for e in entries:
        blob = found.get(e.key)
        if blob is None:
            if e.spec.size is None:  # a fetch is bounded by the declared size: no size, no fetch
                raise InvalidManifest(
                    f"{e.what} {e.spec.filename!r} is not uploaded and gives no size; publishing by CID needs "
                    f"each missing {e.what}'s size in the manifest (or upload its bytes first)",
                    field=f"{e.role}s.size",
                    filename=e.spec.filename,
                )
            out.append(None)
            continue
        _check_blob(e, blob)
        out.append(blob)
    return out


def _check_blob(e: Entry, blob: Blob) -> None:
    sh = e.spec
    if not hmac.compare_digest(blob.sha256, sh.sha256_hex):
        raise ShardMismatch(
            f"{e.what} {sh.filename!r} declares sha256:{sh.sha256_hex} but the bytes with CID {sh.cid} "
            f"have sha256:{blob.sha256}",
            filename=sh.filename,
            expected=sh.sha256_hex,
            actual=blob.sha256,
        )
    if sh.size is not None and sh.size != blob.size:
        raise ShardMismatch(
            f"{e.what} {sh.filename!r} declares {sh.size} bytes but the bytes with CID {sh.cid} are {blob.size}",
            filename=sh.filename,
            expected=sh.size,
            actual=blob.size,
        )


async def _check_owned(
    s: AsyncSession, entries: list[Entry], found: dict[str, Blob], principal: Principal
) -> None:
    """Bytes no pack references yet are private to the publishers who uploaded them (``BlobUploader``,
    see ``BlobService.readable_by``): a publish by anyone else (but a global admin) must not make them
    readable by referencing their CID."""
    if principal.is_global_admin:
        return
    mine = select(BlobUploader.cid).where(
        BlobUploader.cid.in_(found), BlobUploader.publisher_id == principal.publisher_id
    )
    foreign = set(found) - set((await s.execute(mine)).scalars())
    if not foreign:
        return
    referenced = set((await s.execute(select(Shard.cid).where(Shard.cid.in_(foreign)).distinct())).scalars())
    for e in entries:
        if e.key in foreign and e.key not in referenced:
            raise Forbidden(
                f"the bytes of {e.what} {e.spec.filename!r} (CID {e.key}) were uploaded by another publisher "
                "and no pack uses them yet, so this publish may not reference them (a global admin may)",
                filename=e.spec.filename,
                cid=e.key,
            )
