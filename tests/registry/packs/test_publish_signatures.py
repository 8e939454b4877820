"""Publish records one verdict per signature; a signature that does not verify for a known key refuses the pack."""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_core.format.pack import load_manifest
from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from registry.accounts.auth import AuthService
from registry.accounts.principal import Principal
from registry.db.base import utcnow
from registry.db.models import Pack, Signature, SigningKey
from registry.names import ModelRef
from registry.packs.blobs import BlobService
from registry.packs.publish import PublishService
from registry.trust.errors import BadSignature
from registry.trust.keys import generate_private_key, public_key_of
from registry.trust.signatures import make_signature, sign_manifest
from tests.registry.api import helpers

SHARD = ("model-00001-of-00001.safetensors", helpers.shard_bytes(3000, 9))
REF = ModelRef("acme", "tiny")


@dataclass
class Env:
    sessions: async_sessionmaker[AsyncSession]
    publish: PublishService
    alice: Principal


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def env(sessions: async_sessionmaker[AsyncSession], tmp_path: Path) -> Env:
    auth = AuthService(sessions)
    tok = await auth.create_token("alice", namespaces=["acme"])
    alice = await auth.authenticate(tok.token)
    store = FsBlockstore(tmp_path / "blocks", FsBlockstoreConfig(fsync=False))
    await BlobService(sessions, store).ingest(alice, helpers.cid_of(SHARD[1]), _chunks(SHARD[1]))
    return Env(sessions, PublishService(sessions, None), alice)


async def register(env: Env, key: Any, *, revoked: bool = False) -> None:
    pub = public_key_of(key)
    async with env.sessions() as s, s.begin():
        s.add(
            SigningKey(
                key_id=pub.key_id,
                public_key=pub.raw,
                revoked_at=utcnow() - timedelta(hours=1) if revoked else None,
            )
        )


async def verdicts(env: Env) -> list[tuple[str, str, str]]:
    async with env.sessions() as s:
        rows = (await s.execute(select(Signature).order_by(Signature.id))).scalars()
        return [(r.key_id, r.kind, r.verdict.value) for r in rows]


async def test_valid_unknown_revoked_and_detached_signatures_are_recorded(env: Env) -> None:
    good, stranger, old, detached_key = (generate_private_key() for _ in range(4))
    await register(env, good)
    await register(env, old, revoked=True)
    await register(env, detached_key)
    m = helpers.manifest([SHARD])
    for k in (good, stranger, old):
        m = sign_manifest(m, k)
    detached = make_signature(m, detached_key).to_json()
    result = await env.publish.publish(env.alice, REF, load_manifest(m), detached=[detached])
    assert result.created
    ids = {
        public_key_of(k).key_id: name
        for k, name in ((good, "good"), (stranger, "stranger"), (old, "old"), (detached_key, "det"))
    }
    assert [(ids[k], kind, v) for k, kind, v in await verdicts(env)] == [
        ("good", "inline", "valid"),
        ("stranger", "inline", "unknown_key"),
        ("old", "inline", "revoked"),
        ("det", "detached", "valid"),
    ]


async def test_a_bad_signature_by_a_known_key_refuses_the_pack_naming_the_key(env: Env) -> None:
    key = generate_private_key()
    await register(env, key)
    signed = sign_manifest(helpers.manifest([SHARD]), key)
    tampered = copy.deepcopy(signed)
    tampered["license"] = "changed-after-signing"
    with pytest.raises(BadSignature) as exc:
        await env.publish.publish(env.alice, REF, load_manifest(tampered))
    assert exc.value.key_id == public_key_of(key).key_id and exc.value.http_status == 422
    async with env.sessions() as s:
        assert (await s.execute(select(func.count()).select_from(Pack))).scalar_one() == 0
    assert await verdicts(env) == []


async def test_a_malformed_signature_entry_is_refused(env: Env) -> None:
    m = helpers.manifest([SHARD])
    m["provenance"] = {
        "signatures": [{"key_id": "ed25519:00", "signature": base64.b64encode(b"short").decode()}]
    }
    with pytest.raises(BadSignature, match="malformed"):
        await env.publish.publish(env.alice, REF, load_manifest(m))
    with pytest.raises(BadSignature, match="malformed"):
        await env.publish.publish(
            env.alice, REF, load_manifest(helpers.manifest([SHARD])), detached=[{"nope": 1}]
        )
