"""Builders shared by the registry API, service and CLI tests: shard bytes, manifests, tokens, uploads, row counts."""

from __future__ import annotations

import hashlib
import io
import random
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from pinner.unixfs import UnixfsParams, hash_file
from registry.api.keys import REGISTRY, SESSIONS
from registry.db.jobs import Job
from registry.db.models import Pack, PackStateChange, Pointer, PointerChange, Shard


def shard_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def cid_of(data: bytes, params: UnixfsParams | None = None) -> str:
    return str(hash_file(io.BytesIO(data), params).cid)


def shard_entry(
    name: str, data: bytes, *, size: bool = True, params: UnixfsParams | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": name,
        "cid": cid_of(data, params),
        "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
    }
    if size:
        entry["size"] = len(data)
    return entry


def manifest(shards: list[tuple[str, bytes]], version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {
        "format": "safetensors",
        "model_name": "tiny",
        "model_version": version,
        "config": {"vocab_size": 256, "d_model": 64, "dropout": 0.0},
        "shards": [shard_entry(n, d) for n, d in shards],
        **extra,
    }


async def token(
    app: web.Application,
    publisher: str,
    namespaces: list[str] | None = None,
    scopes: tuple[str, ...] = ("publish",),
) -> str:
    issued = await app[REGISTRY].auth.create_token(publisher, namespaces=namespaces, scopes=scopes)
    return issued.token


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def upload(client: TestClient, tok: str, data: bytes, **query: str) -> Any:
    cid = query.pop("cid", None) or cid_of(data)
    return await client.put(f"/v1/blobs/{cid}", data=data, headers=bearer(tok), params=query)


async def publish(client: TestClient, tok: str, name: str, body: dict[str, Any]) -> Any:
    return await client.post(f"/v1/models/{name}/packs", json=body, headers=bearer(tok))


async def upload_and_publish(
    client: TestClient, tok: str, name: str, shards: list[tuple[str, bytes]], **body: Any
) -> dict[str, Any]:
    for _, data in shards:
        r = await upload(client, tok, data)
        assert r.status in (200, 201), await r.text()
    extra = {"model_name": name.split("/", 1)[1], **body.pop("manifest_extra", {})}  # bound to the target
    r = await publish(client, tok, name, {"manifest": manifest(shards, **extra), **body})
    assert r.status in (200, 201), await r.text()
    out: dict[str, Any] = await r.json()
    return out


async def counts(client: TestClient) -> dict[str, int]:
    """Rows per table a publish writes, in the app behind ``client`` (a refused publish changes none)."""
    async with client.app[SESSIONS]() as s:
        return {
            t.__tablename__: (await s.execute(select(func.count()).select_from(t))).scalar_one()
            for t in (Pack, Shard, PackStateChange, Pointer, PointerChange, Job)
        }


def prove_key(challenge: dict[str, Any], key: Any) -> dict[str, str]:
    """The registration body for ``key`` answering ``challenge`` (proof of possession)."""
    import base64

    from registry.trust.keys import public_key_of

    signature = base64.b64encode(key.sign(str(challenge["statement"]).encode())).decode()
    return {"public_key": public_key_of(key).b64, "challenge": challenge["challenge"], "signature": signature}


async def register_key(client: TestClient, tok: str, key: Any) -> Any:
    """``POST /v1/key-challenges`` then ``POST /v1/keys`` signed by ``key``; the second response."""
    from registry.trust.keys import public_key_of

    r = await client.post(
        "/v1/key-challenges", json={"public_key": public_key_of(key).b64}, headers=bearer(tok)
    )
    assert r.status == 200, await r.text()
    return await client.post("/v1/keys", json=prove_key(await r.json(), key), headers=bearer(tok))


async def register_key_with(trust: Any, principal: Any, key: Any, public_key: str | None = None) -> Any:
    """``TrustService.register_key`` with a fresh challenge signed by ``key``."""
    import base64

    from registry.trust.keys import public_key_of

    text = public_key or public_key_of(key).b64
    _, ch = await trust.issue_challenge(principal, text)
    return await trust.register_key(
        principal, text, ch.challenge, base64.b64encode(key.sign(ch.statement)).decode()
    )
