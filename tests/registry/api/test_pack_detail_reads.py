"""The pack detail's fast read (one statement on Postgres, one read transaction on SQLite) and its content memo:
what a GET shows is the index's current state of the listing (its replicas counted over its own shards only,
the newest validation, its pointers, a new state), while the manifest and shards, kept per CID, render as the
schema would (SQLite and Postgres)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from pinner.states import NodeKind, NodeState, ReplicaState
from registry.api.keys import REGISTRY, SESSIONS
from registry.api.packs import render_pack
from registry.api.schemas import PackOut
from registry.app.daemon import build_app
from registry.cache import Memo
from registry.db.models import IpfsNode, Pack, PackState, PackStateChange, Replica, ValidationReport
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

A = [
    ("a-00001-of-00002.safetensors", helpers.shard_bytes(40_000, 1)),
    ("a-00002-of-00002.safetensors", helpers.shard_bytes(30_000, 2)),
]
B = [("b.safetensors", helpers.shard_bytes(50_000, 3))]


@pytest.fixture
async def reg(settings: Settings) -> AsyncIterator[Registry]:
    """The registry with its read cache off: every GET reads the index."""
    settings = settings.model_copy(
        update={
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
            "server": settings.server.model_copy(update={"read_cache_ttl_s": 0}),
        }
    )
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        yield Registry(client, "", await helpers.token(app, "alice", ["acme"]))


async def _detail(reg: Registry, cid: str) -> dict[str, object]:
    r = await reg.client.get(f"/v1/packs/{cid}")
    assert r.status == 200, await r.text()
    body: dict[str, object] = await r.json()
    PackOut.model_validate(body)  # the schema the OpenAPI document names
    return body


async def test_the_detail_shows_the_listings_current_state_over_its_own_shards(reg: Registry) -> None:
    a = await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", A)
    b = await helpers.upload_and_publish(reg.client, reg.alice, "acme/other", B)
    first = await _detail(reg, a["cid"])  # fills the content memo
    assert first["replicas"] == {} and first["pointers"] == ["latest"]
    now = datetime.now(UTC)
    async with reg.client.app[SESSIONS]() as s, s.begin():
        nodes = [
            IpfsNode(name=f"n{i}", kind=NodeKind.KUBO, url=f"http://127.0.0.1:{i + 1}", state=NodeState.UP)
            for i in range(3)
        ]
        s.add_all(nodes)
        await s.flush()
        a_shards = [helpers.cid_of(data) for _, data in A]
        for node in nodes:  # A: both shards and its manifest block on every node, one shard failed on n2
            for c in a_shards:
                failed = node.name == "n2" and c == a_shards[1]
                s.add(
                    Replica(
                        cid=c, node_id=node.id, state=ReplicaState.FAILED if failed else ReplicaState.PINNED
                    )
                )
            s.add(Replica(cid=a["cid"], node_id=node.id, state=ReplicaState.PINNED))
            # B's shard and manifest: must not count toward A
            s.add(Replica(cid=helpers.cid_of(B[0][1]), node_id=node.id, state=ReplicaState.LOST))
            s.add(Replica(cid=b["cid"], node_id=node.id, state=ReplicaState.QUEUED))
        for i, verdict in enumerate(("fail", "pass")):
            s.add(
                ValidationReport(
                    pack_cid=a["cid"],
                    verdict=verdict,
                    reason=f"run {i} read /var/lib/modelpack/blocks/x/{A[0][0]}",
                    report={},
                    started_at=now + timedelta(seconds=i),
                    finished_at=now + timedelta(seconds=i, milliseconds=500),
                )
            )
        pack = (await s.execute(Pack.__table__.select().where(Pack.cid == a["cid"]))).one()
        await s.execute(
            update(Pack).where(Pack.id == pack.id).values(state=PackState.VALIDATED, state_reason="checked")
        )
        s.add(
            PackStateChange(
                pack_cid=a["cid"],
                model_id=pack.model_id,
                from_state=PackState.AVAILABLE,
                to_state=PackState.VALIDATED,
                reason="checked in /tmp/work/sandbox",
                actor="gate",
            )
        )
    moved = await reg.client.put(
        "/v1/models/acme/tiny/pointers/stable", json={"cid": a["cid"]}, headers=helpers.bearer(reg.alice)
    )
    assert moved.status == 200, await moved.text()

    second = await _detail(reg, a["cid"])  # the content from the memo, the rest read now
    assert second["replicas"] == {"pinned": 8, "failed": 1}
    assert second["state"] == "validated" and second["state_reason"] == "checked"
    assert second["pointers"] == ["latest", "stable"]
    assert second["validation"] == {
        "verdict": "pass",
        "reason": f"run 1 read <host>/{A[0][0]}",
        "started_at": (now + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
        "finished_at": (now + timedelta(seconds=1, milliseconds=500)).isoformat().replace("+00:00", "Z"),
    }
    assert [h["to"] for h in second["history"]][-1] == "validated"  # type: ignore[index]
    assert second["history"][-1]["reason"] == "checked in <host>/sandbox"  # type: ignore[index]
    assert len(second["history"]) == len(first["history"]) + 1  # type: ignore[arg-type]
    for key in ("manifest", "shards", "files", "cid", "total_size", "shard_count", "created_at"):
        assert second[key] == first[key], key
    assert [sh["filename"] for sh in second["shards"]] == [name for name, _ in A]  # type: ignore[index]
    other = await _detail(reg, b["cid"])
    assert other["replicas"] == {"lost": 3, "queued": 3} and other["pointers"] == ["latest"]


async def test_the_rendering_with_the_memo_equals_the_schemas(reg: Registry) -> None:
    a = await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", A)
    detail = await reg.client.app[REGISTRY].browse.pack(a["cid"])
    memo: Memo[str, bytes] = Memo(4, 1 << 20, len)
    plain = render_pack(detail)
    once, twice = render_pack(detail, memo), render_pack(detail, memo)
    assert len(memo) == 1 and once == twice
    assert json.loads(once) == json.loads(plain)
    whole = PackOut.model_validate(json.loads(plain)).model_dump_json(by_alias=True)
    assert json.loads(whole) == json.loads(once)
    assert (
        whole.encode() == once
    )  # byte for byte: the state's fields, then the content's, as the schema orders them
