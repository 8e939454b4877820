"""The Hugging Face Hub read API over plain HTTP: model info, tree, resolve headers and ranges, revisions
(tags, ``main``, pack ids, commit ids), the Hub's error shape, and routes it must not shadow."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from registry.api.hfhub_core import commit_of
from registry.api.keys import REGISTRY, SESSIONS
from registry.app.daemon import build_app
from registry.db.models import Pack, PackState
from registry.names import ModelRef
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

WEIGHTS = helpers.shard_bytes(300_000, 11)
CONFIG = b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n'
TOKENIZER = helpers.shard_bytes(3000, 12)
FILES = [("config.json", CONFIG), ("tokenizer.json", TOKENIZER)]


async def publish_hf(reg: Registry, name: str = "acme/tiny", seed: int = 0, **body: Any) -> dict[str, Any]:
    weights = WEIGHTS if seed == 0 else helpers.shard_bytes(300_000, 100 + seed)
    for _, data in FILES:
        r = await helpers.upload(reg.client, reg.alice, data)
        assert r.status in (200, 201), await r.text()
    files = [helpers.shard_entry(n, d) for n, d in FILES]
    return await helpers.upload_and_publish(
        reg.client,
        reg.alice,
        name,
        [("model.safetensors", weights)],
        manifest_extra={"files": files, "model_version": f"1.0.{seed}"},
        **body,
    )


async def get(reg: Registry, path: str, **headers: str) -> Any:
    return await reg.client.get(path, headers=headers)


async def test_model_info_lists_every_file_with_its_lfs_sha256_and_the_commit_maps_back(
    reg: Registry,
) -> None:
    pub = await publish_hf(reg)
    cid = pub["cid"]
    r = await get(reg, "/api/models/acme/tiny/revision/latest")
    assert r.status == 200, await r.text()
    info = await r.json()
    assert (
        info["id"] == "acme/tiny" and info["sha"] == commit_of(cid) == hashlib.sha1(cid.encode()).hexdigest()
    )
    assert info["private"] is False and info["gated"] is False and info["lastModified"].endswith("Z")
    sib = {s["rfilename"]: s for s in info["siblings"]}
    assert list(sib) == ["model.safetensors", "config.json", "tokenizer.json"]
    w = sib["model.safetensors"]
    assert w["size"] == len(WEIGHTS) and w["lfs"]["sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert w["lfs"]["size"] == len(WEIGHTS) and w["lfs"]["pointerSize"] > 0
    assert sib["config.json"]["lfs"]["sha256"] == hashlib.sha256(CONFIG).hexdigest()
    assert info["modelpack"] == {"pack": cid, "state": "available", "revision": "latest"}
    # ``main`` (the clients' default) is ``latest`` here; the commit id and the CID name the same pack
    for rev in ("main", commit_of(cid), cid):
        again = await (await get(reg, f"/api/models/acme/tiny/revision/{rev}")).json()
        assert again["sha"] == info["sha"], rev
    assert (await (await get(reg, "/api/models/acme/tiny")).json())["sha"] == info["sha"]


async def test_the_tree_is_flat_and_says_what_the_client_caches(reg: Registry) -> None:
    cid = (await publish_hf(reg))["cid"]
    r = await get(reg, "/api/models/acme/tiny/tree/latest?recursive=True&expand=True")
    assert r.status == 200 and "Link" not in r.headers
    entries = await r.json()
    assert [(e["type"], e["path"], e["size"]) for e in entries] == [
        ("file", "model.safetensors", len(WEIGHTS)),
        ("file", "config.json", len(CONFIG)),
        ("file", "tokenizer.json", len(TOKENIZER)),
    ]
    assert entries[0]["lfs"]["oid"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert entries[0]["lastCommit"]["id"] == commit_of(cid)
    r = await get(reg, "/api/models/acme/tiny/tree/latest/additional_chat_templates")
    assert r.status == 404 and r.headers["X-Error-Code"] == "EntryNotFound"
    r = await get(reg, "/api/models/acme/tiny/tree/latest?cursor=x")
    assert r.status == 400 and "cursor" in (await r.json())["error"]


async def test_resolve_serves_the_bytes_with_the_headers_hf_hub_download_reads(reg: Registry) -> None:
    cid = (await publish_hf(reg))["cid"]
    url = "/acme/tiny/resolve/latest/model.safetensors"
    head = await reg.client.head(url)
    assert head.status == 200
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    assert head.headers["X-Repo-Commit"] == commit_of(cid)
    assert head.headers["ETag"] == head.headers["X-Linked-Etag"] == f'"{sha}"'
    assert head.headers["X-Linked-Size"] == head.headers["Content-Length"] == str(len(WEIGHTS))
    assert head.headers["Accept-Ranges"] == "bytes" and "Location" not in head.headers
    r = await get(reg, url)
    assert r.status == 200 and await r.read() == WEIGHTS
    assert r.headers["Cache-Control"] == "no-cache"  # a tag moves
    r = await get(reg, f"/acme/tiny/resolve/{commit_of(cid)}/config.json")
    assert await r.read() == CONFIG and "immutable" in r.headers["Cache-Control"]
    part = await get(reg, url, Range="bytes=1000-")
    assert part.status == 206 and await part.read() == WEIGHTS[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(WEIGHTS) - 1}/{len(WEIGHTS)}"
    mid = await get(reg, url, Range="bytes=10-19")
    assert mid.status == 206 and await mid.read() == WEIGHTS[10:20]
    tail = await get(reg, url, Range="bytes=-5")
    assert tail.status == 206 and await tail.read() == WEIGHTS[-5:]
    for bad in (f"bytes={len(WEIGHTS)}-", "bytes=99999999-", "bytes=-0"):
        r = await get(reg, url, Range=bad)
        assert r.status == 416, bad
        assert r.headers["Content-Range"] == f"bytes */{len(WEIGHTS)}"
        assert "not satisfiable" in (await r.json())["error"]
    cached = await get(reg, url, **{"If-None-Match": f'"{sha}"'})
    assert cached.status == 304


@pytest.mark.parametrize(
    ("path", "status", "code", "says"),
    [
        ("/acme/nope/resolve/latest/config.json", 404, "RepoNotFound", "acme/nope"),
        ("/api/models/nobody/tiny", 404, "RepoNotFound", "nobody/tiny"),
        ("/acme/tiny/resolve/v9/config.json", 404, "RevisionNotFound", "'v9'"),
        ("/acme/tiny/resolve/x!y/config.json", 404, "RevisionNotFound", "'x!y'"),
        ("/acme/tiny/resolve/refs%2Fpr%2F1/config.json", 404, "RevisionNotFound", "'refs/pr/1'"),
        (f"/acme/tiny/resolve/{'0' * 40}/config.json", 404, "RevisionNotFound", "commit id"),
        ("/api/models/acme/tiny/revision/" + "a" * 500, 404, "RevisionNotFound", "cut at"),
        ("/acme/tiny/resolve/latest/secret.bin", 404, "EntryNotFound", "'secret.bin'"),
        ("/acme/tiny/resolve/latest/..%2F..%2Fetc%2Fpasswd", 404, "EntryNotFound", "passwd"),
        ("/acme/tiny/resolve/latest/manifest.json", 404, "EntryNotFound", "manifest.json"),
        ("/acme/ti%20ny/resolve/latest/config.json", 400, None, "Invalid repo id"),
        ("/api/models/acme/a..b", 400, None, "Invalid repo id"),
        ("/api/models/acme/-x/tree/latest", 400, None, "Invalid repo id"),
        ("/api/models/acme/tiny/refs", 404, None, "not served"),
    ],
)
async def test_bad_requests_get_the_hubs_error_shape(
    reg: Registry, path: str, status: int, code: str | None, says: str
) -> None:
    await publish_hf(reg)
    r = await get(reg, path)
    assert r.status == status, (path, await r.text())
    assert r.headers.get("X-Error-Code") == code
    body = await r.json()
    assert says in body["error"] and body["error"] == r.headers["X-Error-Message"]
    assert len(body["error"]) <= 300
    if code == "EntryNotFound":  # the client caches the file's absence under this commit
        assert r.headers["X-Repo-Commit"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/repos/create"),
        ("POST", "/api/models/acme/tiny/preupload/main"),
        ("POST", "/api/models/acme/tiny/commit/main"),
        ("PUT", "/api/models/acme/tiny/settings"),
        ("DELETE", "/api/repos/delete"),
        ("POST", "/api/models/acme/tiny/revision/latest"),
    ],
)
async def test_write_calls_are_refused_in_the_hubs_shape(reg: Registry, method: str, path: str) -> None:
    await publish_hf(reg)
    r = await reg.client.request(method, path, json={"name": "x"}, headers=helpers.bearer(reg.alice))
    assert r.status == 403, await r.text()
    assert "read-only" in (await r.json())["error"] and "read-only" in r.headers["X-Error-Message"]


async def test_a_pack_not_yet_available_or_rejected_is_no_revision(reg: Registry) -> None:
    first = (await publish_hf(reg, seed=1))["cid"]
    second = (await publish_hf(reg, seed=2, tag="rc"))["cid"]
    for state in (PackState.RECEIVED, PackState.REJECTED):
        async with reg.client.app[SESSIONS]() as s, s.begin():
            await s.execute(update(Pack).where(Pack.cid == second).values(state=state))
        for rev in ("rc", "latest", second, commit_of(second)):
            r = await get(reg, f"/acme/tiny/resolve/{rev}/config.json")
            assert r.status == 404 and r.headers["X-Error-Code"] == "RevisionNotFound", (state, rev)
            assert state.value in r.headers["X-Error-Message"]
    r = await get(reg, f"/api/models/acme/tiny/revision/{first}")
    assert r.status == 200


async def test_a_cid_is_resolved_within_the_requested_model_only(reg: Registry) -> None:
    cid = (await publish_hf(reg))["cid"]
    await publish_hf(reg, name="acme/other", seed=3)
    r = await get(reg, f"/acme/other/resolve/{cid}/config.json")
    assert r.status == 404 and r.headers["X-Error-Code"] == "RevisionNotFound"
    r = await get(reg, f"/acme/other/resolve/{commit_of(cid)}/config.json")
    assert r.status == 404 and r.headers["X-Error-Code"] == "RevisionNotFound"


async def test_a_main_pointer_wins_over_latest_and_tags_resolve(reg: Registry) -> None:
    first = (await publish_hf(reg, seed=1, tag="stable"))["cid"]
    second = (await publish_hf(reg, seed=2))["cid"]
    sha = {
        rev: (await (await get(reg, f"/api/models/acme/tiny/revision/{rev}")).json())["sha"]
        for rev in ("main", "stable")
    }
    assert sha == {"main": commit_of(second), "stable": commit_of(first)}
    r = await reg.client.put(
        "/v1/models/acme/tiny/pointers/main", json={"cid": first}, headers=helpers.bearer(reg.alice)
    )
    assert r.status == 200, await r.text()
    reg.client.app[REGISTRY].pointers.forget_model(ModelRef("acme", "tiny"))
    info = await (await get(reg, "/api/models/acme/tiny")).json()
    assert info["sha"] == commit_of(first)


async def test_the_hub_routes_shadow_none_of_the_registrys_own(reg: Registry) -> None:
    await publish_hf(reg)
    assert (await get(reg, "/healthz")).status == 200
    assert (await get(reg, "/v1/models")).status == 200
    assert (await get(reg, "/")).status == 200
    assert (await get(reg, "/ui/models")).status == 200
    r = await get(reg, "/ui/acme/tiny/resolve/latest/config.json")  # the pages' own 404, not a file
    assert r.status == 404 and "X-Error-Code" not in r.headers and r.content_type == "text/html"
    r = await get(reg, "/v1/models/acme/tiny/packs")
    assert r.status == 200 and "items" in await r.json()
    r = await get(reg, "/v1/models/acme/tiny/pointers/latest")
    assert r.status == 200 and "cid" in await r.json()


async def test_reads_need_a_token_when_the_registry_says_so(settings: Settings) -> None:
    settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"read_requires_token": True}),
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
        }
    )
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        reg = Registry(client, "", await helpers.token(app, "alice", ["acme"]))
        await publish_hf(reg)
        url = "/acme/tiny/resolve/latest/config.json"
        r = await get(reg, url)
        assert r.status == 401 and r.headers["X-Error-Code"] == "GatedRepo"
        assert "HF_TOKEN" in r.headers["X-Error-Message"]
        r = await get(reg, "/api/models/nobody/tiny")  # the gate first: no token says nothing about existence
        assert r.status == 401 and r.headers["X-Error-Code"] == "GatedRepo"
        r = await get(reg, url, Authorization="Bearer not-a-token")
        assert (
            r.status == 401 and r.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
        )
        pin_only = await helpers.token(app, "pinner", scopes=("pin",))
        r = await get(reg, url, **helpers.bearer(pin_only))
        assert r.status == 403 and r.headers["X-Error-Code"] == "GatedRepo"
        r = await get(reg, url, **helpers.bearer(reg.alice))
        assert r.status == 200 and await r.read() == CONFIG
