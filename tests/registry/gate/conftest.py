"""The daemon's app on a fresh database (SQLite and Postgres) with its gate, tokens and a trusted key.

The job worker is off: tests call the gate's services directly, so every step is deterministic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.api.keys import BLOCKSTORE, GATE, SESSIONS
from registry.app.daemon import build_app
from registry.gate.validation import ValidationService
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.gate import packs


@dataclass
class GateEnv:
    client: TestClient
    admin: str
    alice: str
    key: Ed25519PrivateKey
    tmp: Path

    @property
    def app(self) -> web.Application:
        return self.client.app

    @property
    def gate(self) -> ValidationService:
        return self.app[GATE]

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.app[SESSIONS]

    @property
    def quick(self) -> ValidationService:
        """The daemon's gate with a sandbox stand-in that passes every pack (for tests about curation)."""
        g = self.gate
        return ValidationService(
            self.sessions, g.config, g.curation, None, store=self.app[BLOCKSTORE], runner=packs.FakeRunner()
        )

    async def publish(self, pack: Path, name: str = "acme/tiny") -> str:
        for _, data in packs.shard_files(pack):
            r = await helpers.upload(self.client, self.alice, data, cid=packs.cid_of(data))
            assert r.status in (200, 201), await r.text()
        r = await helpers.publish(self.client, self.alice, name, {"manifest": packs.manifest_of(pack)})
        assert r.status in (200, 201), await r.text()
        cid: str = (await r.json())["cid"]
        return cid

    async def make_and_publish(
        self,
        *,
        seed: int = 0,
        defect: str | None = None,
        signed: bool = True,
        key: Ed25519PrivateKey | None = None,
    ) -> str:
        pack = packs.make_pack(self.tmp / f"pack-{seed}-{defect}-{signed}", seed=seed, defect=defect)
        if signed:
            packs.sign(pack, key or self.key)
        return await self.publish(pack)

    async def get(self, path: str, tok: str | None = None) -> Any:
        r = await self.client.get(path, headers=helpers.bearer(tok) if tok else None)
        return r.status, await r.json()

    async def post(self, path: str, body: Any = None, tok: str | None = None) -> Any:
        r = await self.client.post(path, json=body, headers=helpers.bearer(tok) if tok else None)
        return r.status, await r.json()


async def trust_key(
    client: TestClient, admin: str, alice: str, key: Ed25519PrivateKey, namespace: str = "acme"
) -> None:
    """Register ``key`` as alice's and make it the namespace's trusted key."""
    r = await helpers.register_key(client, alice, key)
    assert r.status in (200, 201), await r.text()
    r = await client.put(
        f"/v1/namespaces/{namespace}/policy",
        json={"keys": [packs.key_id(key)], "reason": "test"},
        headers=helpers.bearer(admin),
    )
    assert r.status == 200, await r.text()


@pytest.fixture
async def env(settings: Settings, tmp_path: Path) -> AsyncIterator[GateEnv]:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        admin = await helpers.token(app, "root", scopes=("admin",))
        alice = await helpers.token(app, "alice", ["acme"])
        key = Ed25519PrivateKey.generate()
        await trust_key(client, admin, alice, key)
        yield GateEnv(client, admin, alice, key, tmp_path)
