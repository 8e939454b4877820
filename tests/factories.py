"""The one way tests make packs: real shard bytes in the blockstore, a real manifest, published by the service.

Shard bytes are ingested into an ``FsBlockstore`` and recorded as Blob rows (what an upload and a fetch
from IPFS both end in), the manifest lists their real CID, sha256 and size, and ``PublishService`` stores
the pack, its shards, signature verdicts and pointers in one transaction (``latest``, and ``tag`` if given).
The ``pack_factory`` fixture (tests/conftest.py) gives one over the test's database.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.format.pack import load_manifest
from pinner.blockstore import FsBlockstore
from pinner.cids import cid_str
from pinner.unixfs import UnixfsParams
from registry.accounts.auth import AuthService
from registry.accounts.principal import Principal
from registry.jobs.protocol import JobQueue
from registry.names import parse_model_name
from registry.packs.lifecycle import record_blob
from registry.packs.publish import PublishService
from registry.trust.signatures import make_signature, sign_manifest

KUBO_V1 = UnixfsParams(cid_version=1, raw_leaves=True)  # `ipfs add --cid-version=1`


async def principal(
    sessions: async_sessionmaker[AsyncSession],
    publisher: str,
    namespaces: list[str] | None = None,
    scopes: tuple[str, ...] = ("publish",),
) -> Principal:
    """The principal behind a freshly issued token (the publisher and namespaces are created as needed)."""
    auth = AuthService(sessions)
    issued = await auth.create_token(publisher, namespaces=namespaces, scopes=scopes)
    return await auth.authenticate(issued.token)


def shard_data(version: str, index: int = 0, size: int = 1024) -> bytes:
    """Bytes for shard ``index`` of ``version``: the same arguments give the same bytes."""
    seed = hashlib.sha256(f"{version}/{index}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class PackFactory:
    """Publishes real packs into ``sessions`` with their bytes in ``store``.

    ``jobs``: the queue publish enqueues replicate/validate on (None: no jobs, as with a registry that runs
    no queue). ``publisher`` publishes every pack unless a call names another one.
    """

    sessions: async_sessionmaker[AsyncSession]
    store: FsBlockstore
    jobs: JobQueue | None = None
    publisher: str = "alice"

    async def ingest(self, data: bytes, params: UnixfsParams | None = None) -> dict[str, Any]:
        """Put ``data`` in the store and record it; returns its manifest entry without the filename."""
        digest = self.store.ingest_file(io.BytesIO(data), params or KUBO_V1)
        cid = cid_str(digest.cid)
        await record_blob(
            self.sessions,
            cid,
            sha256_hex=digest.sha256.hex(),
            size=digest.size,
            unixfs_profile=None,
            uploaded_by=None,
        )
        return {"cid": cid, "sha256": "sha256:" + digest.sha256.hex(), "size": digest.size}

    async def manifest(
        self,
        version: str = "1.0.0",
        *,
        model: str = "tiny",
        shards: Sequence[tuple[str, bytes]] | None = None,
        params: UnixfsParams | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A manifest over ``shards`` (default: one small shard made from ``version``), bytes ingested."""
        files = list(shards) if shards is not None else [("model.safetensors", shard_data(version))]
        entries = [{"filename": name, **await self.ingest(data, params)} for name, data in files]
        return {
            "format": "safetensors",
            "model_name": model,
            "model_version": version,
            "config": {"d_model": 8},
            "shards": entries,
            **extra,
        }

    async def publish(
        self,
        ref: str,
        doc: Mapping[str, Any],
        *,
        signers: Sequence[Ed25519PrivateKey] = (),
        sign_over: Mapping[str, Any] | None = None,
        tag: str | None = None,
        publisher: str | None = None,
    ) -> str:
        """Publish ``doc`` as ``ref`` (``ns/model``) with one inline signature per signer; returns the CID.

        ``sign_over``: the signers sign this other manifest instead, so their signatures do not verify
        over ``doc`` (publish stores them only while their keys are unknown to the registry).
        """
        model_ref = parse_model_name(ref)
        signed = dict(doc)
        for key in signers:
            if sign_over is None:
                signed = sign_manifest(signed, key)
            else:
                prov = dict(signed.get("provenance") or {})
                sigs = [*prov.get("signatures", []), make_signature(sign_over, key).to_json()]
                signed = {**signed, "provenance": {**prov, "signatures": sigs}}
        who = await principal(self.sessions, publisher or self.publisher, [model_ref.namespace])
        await self._held_by(who, doc)
        service = PublishService(self.sessions, self.jobs)
        result = await service.publish(who, model_ref, load_manifest(signed), tag=tag)
        return result.cid

    async def _held_by(self, who: Principal, doc: Mapping[str, Any]) -> None:
        """Records the publisher as an uploader of the ingested bytes ``doc`` names, as an upload would
        (a publish may reference bytes no pack uses yet only when its publisher uploaded them)."""
        from registry.db.models import Blob, BlobUploader

        async with self.sessions() as s, s.begin():
            for entry in [*doc.get("shards", ()), *(doc.get("files") or ())]:
                cid = entry.get("cid") if isinstance(entry, Mapping) else None
                if not isinstance(cid, str) or await s.get(Blob, cid) is None:
                    continue
                if await s.get(BlobUploader, (cid, who.publisher_id)) is None:
                    s.add(BlobUploader(cid=cid, publisher_id=who.publisher_id))

    async def make(
        self,
        ref: str = "acme/tiny",
        version: str = "1.0.0",
        *,
        shards: Sequence[tuple[str, bytes]] | None = None,
        params: UnixfsParams | None = None,
        signers: Sequence[Ed25519PrivateKey] = (),
        tag: str | None = None,
    ) -> str:
        """Build and publish a pack of ``ref`` at ``version``; returns its CID."""
        doc = await self.manifest(version, model=parse_model_name(ref).model, shards=shards, params=params)
        return await self.publish(ref, doc, signers=signers, tag=tag)
