"""IPNS over HTTP: records signed on pointer moves, served per the Trustless Gateway, and the validator's refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from registry.api.keys import IPNS_CHANNELS, JOB_QUEUE, SESSIONS
from registry.app.daemon import build_app
from registry.db.jobs import Job, JobState
from registry.db.models import Model
from registry.ipns.name import ipns_name, libp2p_public_key_bytes
from registry.ipns.protobuf import field_bytes
from registry.ipns.publish import peer_id_of
from registry.ipns.record import make_record, validate_record
from registry.packs.pointers import move_pointer
from registry.settings import Settings
from registry.trust.keys import generate_private_key, public_key_of
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

RECORD = "application/vnd.ipfs.ipns-record"
SHARDS = [("model-00001-of-00001.safetensors", helpers.shard_bytes(3000, 3))]
LATER = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
async def lreg(settings: Settings) -> AsyncIterator[Registry]:
    """A registry that also publishes ``@latest`` as an IPNS channel, TTL 120 s."""
    settings = settings.model_copy(
        update={
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
            "ipns": settings.ipns.model_copy(update={"publish_latest": True, "ttl_s": 120}),
        }
    )
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        admin = await helpers.token(app, "root", scopes=("admin",))
        alice = await helpers.token(app, "alice", ["acme"])
        yield Registry(client, admin, alice)


async def _publish(reg: Registry, version: str) -> str:
    out = await helpers.upload_and_publish(
        reg.client, reg.alice, "acme/tiny", SHARDS, manifest_extra={"model_version": version}
    )
    return str(out["cid"])


async def _channel(reg: Registry, tag: str = "latest") -> dict[str, object]:
    r = await reg.client.get(f"/v1/models/acme/tiny/channels/{tag}")
    assert r.status == 200, await r.text()
    out: dict[str, object] = await r.json()
    return out


async def test_publish_signs_latest_and_the_gateway_serves_the_record(lreg: Registry) -> None:
    first = await _publish(lreg, "1")
    ch = await _channel(lreg)
    name = str(ch["name"])
    assert ch["channel"] == "acme/tiny@latest" and ch["sequence"] == 0 and ch["value"] == f"/ipfs/{first}"
    r = await lreg.client.get(f"/ipns/{name}", headers={"Accept": RECORD})
    assert r.status == 200 and r.content_type == RECORD
    assert r.headers["Cache-Control"] == "public, max-age=120"
    rec = validate_record(name, await r.read(), datetime.now(UTC))
    assert rec.path == f"/ipfs/{first}" and rec.sequence == 0

    second = await _publish(lreg, "2")
    r = await lreg.client.get(f"/ipns/{peer_id_of(name)}", params={"format": "ipns-record"})
    rec = validate_record(name, await r.read(), datetime.now(UTC))
    assert (rec.sequence, rec.path) == (1, f"/ipfs/{second}")
    # moving the pointer back by hand signs sequence 2
    r = await lreg.client.put(
        "/v1/models/acme/tiny/pointers/latest", json={"cid": first}, headers=helpers.bearer(lreg.alice)
    )
    assert r.status == 200, await r.text()
    assert (await _channel(lreg))["sequence"] == 2
    async with lreg.client.app[SESSIONS]() as s:
        kinds = [j.kind for j in (await s.execute(select(Job))).scalars()]
    assert kinds.count("ipns-publish") == 1  # one queued publish per name (deduped)


async def test_curated_moves_sign_without_publish_latest(reg: Registry) -> None:
    cid = (await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", SHARDS))["cid"]
    assert (await reg.client.get("/v1/models/acme/tiny/channels/latest")).status == 404
    app = reg.client.app
    async with app[SESSIONS]() as s, s.begin():
        mid = (await s.execute(select(Model.id))).scalar_one()
        await move_pointer(
            s, mid, "curated", cid, actor="gate", reason="t", on_moved=app[IPNS_CHANNELS].on_pointer_moved
        )
    ch = await _channel(reg, "curated")
    assert ch["value"] == f"/ipfs/{cid}" and ch["sequence"] == 0


async def test_gateway_refusals(reg: Registry) -> None:
    name = ipns_name(public_key_of(generate_private_key()))
    r = await reg.client.get(f"/ipns/{name}")
    assert r.status == 406 and (await r.json())["error"]["code"] == "not_acceptable"
    assert (await reg.client.get(f"/ipns/{name}", params={"format": "ipns-record"})).status == 404
    r = await reg.client.get("/ipns/not-a-name", headers={"Accept": RECORD})
    assert r.status == 400 and (await r.json())["error"]["code"] == "bad_ipns_name"
    assert (await reg.client.get("/v1/models/acme/tiny/channels/curated")).status == 404


async def _validate(reg: Registry, name: str, body: bytes) -> tuple[int, dict[str, object]]:
    r = await reg.client.post("/v1/ipns/validate", params={"name": name}, data=body)
    return r.status, await r.json()


def _reason(out: dict[str, object]) -> object:
    err = out["error"]
    assert isinstance(err, dict)
    return err["details"]["reason"]


async def test_validator_accepts_a_good_record_and_names_each_refusal(lreg: Registry) -> None:
    key, thief = generate_private_key(), generate_private_key()
    name = ipns_name(public_key_of(key))
    status, out = await _validate(lreg, name, make_record(key, "/ipfs/bafyfoo", 5, LATER, 10**9))
    assert status == 200 and out["valid"] is True and out["sequence"] == 5 and out["current_sequence"] is None

    cases = [
        (make_record(key, "/ipfs/x", 1, datetime.now(UTC) - timedelta(seconds=1), 0), 400, "expired"),
        (make_record(thief, "/ipfs/x", 1, LATER, 0), 400, "bad_signature_v2"),
        (b"\xff\xff\xff", 400, "malformed"),
        (
            make_record(key, "/ipfs/x", 1, LATER, 0, v1_compatible=False) + field_bytes(1, b"/ipfs/y"),
            400,
            "data_mismatch",
        ),
        (b"\x00" * (10 * 1024 + 1), 413, "too_large"),
    ]
    v1_only = make_record(key, "/ipfs/x", 1, LATER, 0)
    cut = v1_only.index(b"\x42\x40")  # field 8 (signatureV2, 64 bytes): drop V2 signature and data
    cases.append((v1_only[:cut], 400, "v1_only"))
    embedded = make_record(thief, "/ipfs/x", 1, LATER, 0, embed_public_key=True)
    cases.append((embedded, 400, "key_mismatch"))
    for body, code, reason in cases:
        status, out = await _validate(lreg, name, body)
        assert (status, _reason(out)) == (code, reason), (reason, out)
    assert libp2p_public_key_bytes(public_key_of(thief)) in embedded

    # for a name of this registry, lower or equal sequences than the current one are refused
    await _publish(lreg, "1")
    await _publish(lreg, "2")
    ours = str((await _channel(lreg))["name"])
    current = await (await lreg.client.get(f"/ipns/{ours}", params={"format": "ipns-record"})).read()
    status, out = await _validate(lreg, ours, current)
    assert (status, _reason(out)) == (409, "sequence_not_newer")
    async with lreg.client.app[SESSIONS]() as s:
        from registry.db.models import IpnsRecord

        older = (await s.execute(select(IpnsRecord).where(IpnsRecord.sequence == 0))).scalar_one()
    status, out = await _validate(lreg, ours, bytes(older.record))
    assert (status, _reason(out)) == (409, "sequence_not_newer")
    r = await lreg.client.post("/v1/ipns/validate", data=b"x")
    assert r.status == 400


async def test_the_daemon_runs_ipns_publish_and_republish_jobs(settings: Settings) -> None:
    settings = settings.model_copy(update={"ipns": settings.ipns.model_copy(update={"publish_latest": True})})
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        alice = await helpers.token(app, "alice", ["acme"])
        await helpers.upload_and_publish(client, alice, "acme/tiny", SHARDS)
        await app[JOB_QUEUE].enqueue("ipns-republish", {}, dedupe_key="ipns-republish")
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            async with app[SESSIONS]() as s:
                states = {j.kind: j.state for j in (await s.execute(select(Job))).scalars()}
            if (
                states.get("ipns-publish") == JobState.SUCCEEDED
                and states.get("ipns-republish") == JobState.SUCCEEDED
            ):
                break
            assert asyncio.get_running_loop().time() < deadline, states
            await asyncio.sleep(0.05)
