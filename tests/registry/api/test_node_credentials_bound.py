"""#12 item 15: a node's sealed credentials are bound to its row (id) and URL. Copied onto another row, or
left on a row whose URL was edited, they fail with a typed NodeCredentialsError that names the node (the
health check records it as that node's error); rows sealed before the binding are re-sealed at startup."""

from __future__ import annotations

import os

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.ipfs.http import BasicAuth, BearerAuth
from pinner.states import NodeState
from registry.api.keys import SESSIONS
from registry.app.daemon import build_app
from registry.db.models import IpfsNode
from registry.ipns.channels import load_kek
from registry.replication.clients import ClientFactory, NodeClientConfig
from registry.replication.nodes import (
    LEGACY_CREDENTIALS_AAD,
    NodeCredentialsError,
    NodeRegistry,
    _auth_doc,
    check_health,
    open_auth,
    reseal_legacy_credentials,
)
from registry.settings import Settings
from registry.trust.sealing import seal_private_key

KEK = os.urandom(32)
URL_A, URL_B = "http://127.0.0.1:5001", "http://127.0.0.1:5002"


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, IpfsNode]:
    async with sessions() as s:
        return {r.name: r for r in (await s.execute(select(IpfsNode))).scalars()}


async def test_a_credential_copied_to_another_node_does_not_open_there(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    nodes = NodeRegistry(sessions, KEK, allowed_hosts=("127.0.0.1",))
    await nodes.add("a", "kubo", URL_A, auth=BasicAuth("alice", "s3cret"))
    await nodes.add("b", "kubo", URL_B, auth=BearerAuth("other"))
    rows = await _rows(sessions)
    assert open_auth(rows["a"], KEK) == BasicAuth("alice", "s3cret")
    async with sessions() as s, s.begin():  # someone with database access, but not the KEK, copies a's
        await s.execute(update(IpfsNode).where(IpfsNode.name == "b").values(auth=rows["a"].auth))
    b = (await _rows(sessions))["b"]
    with pytest.raises(NodeCredentialsError, match=r"node 'b' \(id \d+, http://127.0.0.1:5002\) do not open"):
        open_auth(b, KEK)
    factory = ClientFactory(None, KEK, NodeClientConfig())  # type: ignore[arg-type]  # no request is made
    version, _, _, error = await check_health(factory.backend, b)
    assert version is None and error is not None and error.startswith("node_credentials_unreadable: ")


async def test_a_url_edited_in_the_database_does_not_take_the_credentials_along(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    nodes = NodeRegistry(sessions, KEK, allowed_hosts=("127.0.0.1",))
    await nodes.add("a", "kubo", URL_A, auth=BasicAuth("alice", "s3cret"))
    async with sessions() as s, s.begin():
        await s.execute(update(IpfsNode).where(IpfsNode.name == "a").values(url="http://127.0.0.1:6666"))
    with pytest.raises(NodeCredentialsError, match="sealed for another node or URL"):
        open_auth((await _rows(sessions))["a"], KEK)


async def _legacy_row(sessions: async_sessionmaker[AsyncSession], kek: bytes, name: str, url: str) -> None:
    """A node row as the code before the binding wrote it."""
    sealed = seal_private_key(_auth_doc(BasicAuth("old", "pw")), kek, aad=LEGACY_CREDENTIALS_AAD)
    async with sessions() as s, s.begin():
        s.add(IpfsNode(name=name, kind="kubo", url=url, auth=sealed, tags={}, state=NodeState.UNKNOWN))


async def test_rows_sealed_before_the_binding_are_resealed_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _legacy_row(sessions, KEK, "old", URL_A)
    with pytest.raises(NodeCredentialsError):  # the old binding is not accepted on read
        open_auth((await _rows(sessions))["old"], KEK)
    assert await reseal_legacy_credentials(sessions, KEK) == 1
    assert open_auth((await _rows(sessions))["old"], KEK) == BasicAuth("old", "pw")
    assert await reseal_legacy_credentials(sessions, KEK) == 0  # already bound
    async with sessions() as s, s.begin():  # garbage is left alone, not a crash
        await s.execute(update(IpfsNode).values(auth=b"mpk1" + bytes(40)))
    assert await reseal_legacy_credentials(sessions, KEK) == 0


async def test_the_daemon_reseals_old_rows_at_startup(settings: Settings) -> None:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    kek = load_kek(settings.ipns.key_encryption_key, settings.storage.data_dir)
    first = build_app(settings)
    async with TestClient(TestServer(first)):
        await _legacy_row(first[SESSIONS], kek, "old", URL_A)
    second = build_app(settings)
    async with TestClient(TestServer(second)):
        assert open_auth((await _rows(second[SESSIONS]))["old"], kek) == BasicAuth("old", "pw")
