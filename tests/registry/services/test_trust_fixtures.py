"""Rows for the trust service tests (no tests here): principals from real tokens, packs with real signatures."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multiformats import CID, multihash
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.accounts.auth import AuthService, Principal
from registry.db.base import utcnow
from registry.db.models import Model, Namespace, Pack, PackState, Signature, SignatureVerdict
from registry.trust.keys import public_key_of
from registry.trust.signatures import make_signature


async def principal(
    sessions: async_sessionmaker[AsyncSession],
    publisher: str,
    namespaces: list[str] | None = None,
    scopes: tuple[str, ...] = ("publish",),
) -> Principal:
    auth = AuthService(sessions)
    issued = await auth.create_token(publisher, namespaces=namespaces, scopes=scopes)
    return await auth.authenticate(issued.token)


def pub_b64(key: Ed25519PrivateKey) -> str:
    return public_key_of(key).b64


def manifest(version: str = "1.0.0") -> dict[str, Any]:
    data = b"weights-" + version.encode()
    return {
        "format": "safetensors",
        "model_name": "tiny",
        "model_version": version,
        "config": {"d_model": 8},
        "shards": [
            {
                "filename": "model.safetensors",
                "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
                "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
            }
        ],
    }


def pack_cid_of(canonical: bytes) -> str:
    return str(CID("base32", 1, "raw", multihash.digest(canonical, "sha2-256")))


async def add_pack(
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    model: str,
    doc: dict[str, Any],
    signers: list[tuple[Ed25519PrivateKey, datetime | None]] = (),  # type: ignore[assignment]
    *,
    sign_over: dict[str, Any] | None = None,
) -> str:
    """Store a pack of ``namespace/model`` with one inline signature per signer (over ``sign_over`` if given)."""
    canonical = rfc8785.dumps(doc)
    cid = pack_cid_of(canonical)
    async with sessions() as s, s.begin():
        ns = (await s.execute(select(Namespace).where(Namespace.name == namespace))).scalar_one()
        m = (
            await s.execute(select(Model).where(Model.namespace_id == ns.id, Model.name == model))
        ).scalar_one_or_none()
        if m is None:
            m = Model(namespace_id=ns.id, name=model)
            s.add(m)
            await s.flush()
        s.add(
            Pack(
                cid=cid,
                model_id=m.id,
                model_version=doc["model_version"],
                manifest=canonical,
                state=PackState.AVAILABLE,
                total_size=10,
                shard_count=1,
            )
        )
        await s.flush()
        for key, received in signers:
            sig = make_signature(sign_over or doc, key)
            s.add(
                Signature(
                    pack_cid=cid,
                    key_id=sig.key_id,
                    kind="inline",
                    algorithm="ed25519",
                    signature=sig.signature,
                    verdict=SignatureVerdict.VALID,
                    received_at=received or utcnow(),
                )
            )
    return cid


def manifest_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
