"""Publish by CID under two models: each listing has its own fetch job and becomes available on its own."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from registry.api.keys import SESSIONS, SHARD_FETCH
from registry.db.jobs import Job
from registry.db.listings import listings_of
from registry.db.models import PackState
from registry.jobs.kinds import JobKind
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry, reg  # noqa: F401  (the app fixture, both databases)
from tests.registry.api.test_publish_fetch import (  # the fake Kubo node fixture
    ON_IPFS,
    SHARDS,
    UPLOADED,
    FakeNode,
    claim_fetch,
    fake_node,  # noqa: F401
)

BARE = helpers.manifest(SHARDS, model_name="tiny")


async def _publish(r: Registry, tok: str, name: str) -> dict[str, Any]:
    up = await helpers.upload(r.client, tok, UPLOADED[1])
    assert up.status in (200, 201), await up.text()
    resp = await helpers.publish(r.client, tok, name, {"manifest": BARE})
    assert resp.status == 201, await resp.text()
    out: dict[str, Any] = await resp.json()
    assert out["state"] == "received"
    return out


async def test_each_listing_fetches_and_moves_its_own_pointers(
    reg: Registry,  # noqa: F811
    fake_node: FakeNode,  # noqa: F811
) -> None:
    await fake_node({helpers.cid_of(ON_IPFS[1]): ON_IPFS[1]})
    mallory = await helpers.token(reg.client.app, "mallory", ["evil"])
    cid = (await _publish(reg, mallory, "evil/tiny"))["cid"]
    assert (await _publish(reg, reg.alice, "acme/tiny"))["cid"] == cid
    async with reg.client.app[SESSIONS]() as s:
        fetches = select(Job).where(Job.kind == JobKind.FETCH)
        keys = sorted(j.dedupe_key or "" for j in (await s.execute(fetches)).scalars())
        mids = {p.model_id for p in await listings_of(s, cid)}
    assert len(keys) == 2 and keys[0] == f"fetch:{cid}" and keys[1].startswith(f"fetch:{cid}@")

    fetch = reg.client.app[SHARD_FETCH]
    await fetch.handle_fetch(await claim_fetch(reg))
    await fetch.handle_fetch(await claim_fetch(reg))
    async with reg.client.app[SESSIONS]() as s:
        states = {p.model_id: p.state for p in await listings_of(s, cid)}
    assert set(states) == mids and len(mids) == 2 and set(states.values()) == {PackState.AVAILABLE}
    for model in ("evil/tiny", "acme/tiny"):
        resp = await reg.client.get(f"/v1/models/{model}/pointers/latest")
        assert resp.status == 200 and (await resp.json())["cid"] == cid
