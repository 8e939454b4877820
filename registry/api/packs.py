"""Packs: publish a manifest under ``ns/model``, pack detail, its exact canonical bytes and its shard bytes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

from aiohttp import web

from model_core.format.digest import Sha256Digest
from model_core.format.errors import InvalidManifest
from model_core.format.pack import load_manifest
from registry.api.auth import read_gate, require_principal, services
from registry.api.bodies import read_json_object, validate
from registry.api.endpoint import CID, CURSOR, ETAG_NONE, LIMIT, MODEL, NS, READ_ERRORS, Param, endpoint
from registry.api.keys import BLOCKSTORE
from registry.api.listing import AMBIGUOUS, PACK_MODEL, pack_model
from registry.api.pagination import decode_cursor, encode_cursor, page_limit
from registry.api.schemas import (
    PackContentOut,
    PackOut,
    PackStateOut,
    PublishIn,
    PublishOut,
    SignatureOut,
    StateChangeOut,
    StateHistoryPage,
    ValidationOut,
)
from registry.cache import Memo
from registry.errors import BadRequest
from registry.gate.hostpaths import scrub
from registry.metrics import record_pull_bytes
from registry.names import ModelRef, check_name, normalize_cid
from registry.packs.browse import PackDetail

routes = web.RouteTableDef()
log = logging.getLogger("modelpack.api")
PUBLISH_KEYS = set(PublishIn.model_fields)
STREAM_BATCH = 4 * 1024 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"


def model_ref(request: web.Request) -> ModelRef:
    return ModelRef(
        check_name(request.match_info["namespace"], "namespace"),
        check_name(request.match_info["model"], "model name"),
    )


def _etag_matches(request: web.Request, etag: str) -> bool:
    inm = request.headers.get("If-None-Match")
    return inm is not None and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")])


@routes.post("/v1/models/{namespace}/{model}/packs")
@endpoint(
    "Publish a manifest",
    tag="packs",
    responses={200: PublishOut, 201: PublishOut},
    params=(NS, MODEL),
    body=PublishIn,
    auth=True,
    errors=(400, 401, 403, 409, 413, 422),
    operation_id="publishPack",
)
async def publish(request: web.Request) -> web.Response:
    """Publish: every shard uploaded and matching (``available``; moves ``latest`` and ``tag``), or, for shards not
    uploaded while IPFS nodes are configured, ``received`` with a fetch job that moves the pointers once every
    byte is verified. With no node configured a missing shard is 409 ``missing_shards``.
    """
    principal = await require_principal(request)
    svc = services(request)
    ref = model_ref(request)
    limits = svc.limits
    body = await read_json_object(
        request,
        limits.manifest_max_bytes + svc.publish_body_slack_bytes,
        limits.json_max_depth + 1,
        "publish body",
    )
    unknown = set(body) - PUBLISH_KEYS
    if unknown:
        raise BadRequest(f"unknown key {sorted(unknown)[0]!r} in the publish body", field=sorted(unknown)[0])
    if "manifest" not in body:
        raise InvalidManifest("the publish body has no 'manifest'", field="manifest")
    parsed = load_manifest(body["manifest"], limits)
    envelope = validate(PublishIn, body, "publish")
    result = await svc.publish.publish(
        principal,
        ref,
        parsed,
        detached=envelope.signatures or [],
        tag=envelope.tag,
        reason=envelope.reason,
    )
    out = PublishOut(
        cid=result.cid,
        created=result.created,
        state=result.state,
        namespace=result.namespace,
        model=result.model,
        model_version=result.model_version,
        pointers=result.pointers,
        signatures=[SignatureOut.model_validate(s) for s in result.signatures],
    )
    return web.json_response(
        text=out.model_dump_json(),
        status=201 if result.created else 200,
        # this listing's model: the CID may be listed under others too
        headers={"Location": f"/v1/packs/{result.cid}?model={result.namespace}/{result.model}"},
    )


@routes.get("/v1/packs/{cid}")
@endpoint(
    "Pack detail",
    tag="packs",
    responses={200: PackOut},
    params=(CID, PACK_MODEL),
    errors=(*READ_ERRORS, AMBIGUOUS),
)
async def get_pack(request: web.Request) -> web.Response:
    """Pack detail: manifest, state and its history, shards, signatures, replicas, validation, pointers.

    With several models listing the CID, ``?model=ns/name`` chooses the listing (409 ``ambiguous_pack``
    otherwise)."""
    await read_gate(request)
    cid = normalize_cid(request.match_info["cid"])
    model = pack_model(request)
    svc = services(request)
    body = svc.pack_json.get(cid) if model is None else None
    if body is None:
        detail = await svc.browse.pack(cid, model)
        body = svc.rendered.get(
            ("pack", cid, model), detail, lambda: render_pack(detail, svc.pack_content_json)
        )
        if model is None:
            svc.pack_json.put(cid, body)
    return web.Response(body=body, content_type="application/json")


@routes.get("/v1/packs/{cid}/history")
@endpoint(
    "A pack's state history",
    tag="packs",
    responses={200: StateHistoryPage},
    params=(CID, CURSOR, LIMIT, PACK_MODEL),
    errors=(*READ_ERRORS, AMBIGUOUS),
)
async def pack_history(request: web.Request) -> web.Response:
    """Every state change of the pack, newest first, one page at a time."""
    await read_gate(request)
    cid = normalize_cid(request.match_info["cid"])
    svc = services(request)
    limit = page_limit(request, svc)
    cur = decode_cursor(request.query.get("cursor"), 1)
    if cur is not None and not isinstance(cur[0], int):
        raise BadRequest("cursor is not one this API returned", cursor=str(cur[0])[:40])
    rows = await svc.browse.state_history(
        cid, before_id=cur[0] if cur else None, limit=limit + 1, model=pack_model(request)
    )
    page = {
        "items": scrub(rows[:limit]),
        "next_cursor": encode_cursor([rows[limit - 1]["id"]]) if len(rows) > limit else None,
    }
    return web.json_response(text=StateHistoryPage.model_validate(page).model_dump_json(by_alias=True))


def render_pack(d: PackDetail, content_json: Memo[str, bytes] | None = None) -> bytes:
    """The pack detail's JSON (:class:`PackOut`): its state (:class:`PackStateOut`), then its content
    (:class:`PackContentOut`), which depends on the CID alone, so with ``content_json`` it is rendered once
    per CID."""
    s = d.summary
    content = None if content_json is None else content_json.get(s.cid)
    if content is None:
        whole = PackContentOut(
            manifest=json.loads(d.manifest),
            shards=[_shard_dict(sh) for sh in d.shards if sh.role == "shard"],
            files=[_shard_dict(sh) for sh in d.shards if sh.role == "file"],
        ).model_dump_json(by_alias=True)
        content = whole[1:-1].encode()  # '"manifest":{...},"shards":[...],"files":[...]'
        if content_json is not None:
            content_json.put(s.cid, content)
    state = PackStateOut.model_construct(  # its values are typed already; the dump still checks them
        cid=s.cid,
        namespace=s.namespace,
        model=s.model,
        model_version=s.model_version,
        state=s.state,
        total_size=s.total_size,
        shard_count=s.shard_count,
        created_at=s.created_at,
        state_reason=scrub(d.state_reason),  # no host paths served (registry.gate.hostpaths)
        history=[StateChangeOut(**h) for h in scrub(d.history)],
        history_next_cursor=None if d.history_before is None else encode_cursor([d.history_before]),
        signatures=[SignatureOut(**x) for x in d.signatures],
        replicas=d.replicas,
        validation=None if d.validation is None else ValidationOut(**scrub(d.validation)),
        pointers=d.pointers,
    )
    head = state.model_dump_json(by_alias=True, warnings="error").encode()
    return head[:-1] + b"," + content + b"}"


def _shard_dict(sh: object) -> dict[str, object]:
    keys = ("position", "filename", "cid", "sha256", "size", "unixfs_profile", "role")
    d = {k: getattr(sh, k) for k in keys}
    d["sha256"] = str(Sha256Digest(str(d["sha256"])))
    return d


@routes.get("/v1/packs/{cid}/manifest")
@endpoint(
    "The exact canonical manifest bytes",
    tag="packs",
    responses={200: "application/json", 304: None},
    params=(CID, ETAG_NONE),
    errors=READ_ERRORS,
)
async def get_manifest(request: web.Request) -> web.Response:
    """The exact canonical (RFC 8785) manifest bytes; their CIDv1 (raw) is the pack CID."""
    await read_gate(request)
    cid = normalize_cid(request.match_info["cid"])
    etag = f'"{cid}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    data = await services(request).browse.manifest(cid)
    if _etag_matches(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="application/json", headers=headers)


def next_batch(it: Iterator[bytes]) -> bytes:
    """The next STREAM_BATCH bytes or so of a verified stream (one thread hop per batch, not per leaf)."""
    parts: list[bytes] = []
    size = 0
    for chunk in it:
        parts.append(chunk)
        size += len(chunk)
        if size >= STREAM_BATCH:
            break
    return b"".join(parts)


@routes.get("/v1/packs/{cid}/shards/{filename}")
@endpoint(
    "A shard's or file's bytes (by its name in the manifest), verified while streamed",
    tag="packs",
    responses={200: "application/octet-stream", 304: None},
    params=(CID, Param("filename", "path", {"type": "string"}, required=True), ETAG_NONE),
    errors=READ_ERRORS,
)
async def get_shard(request: web.Request) -> web.StreamResponse:
    """A shard's (or a ``files`` entry's) bytes, streamed from the store with every leaf verified against its CID."""
    await read_gate(request)
    cid = normalize_cid(request.match_info["cid"])
    shard = await services(request).browse.shard(cid, request.match_info["filename"])
    etag = f'"{shard.cid}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "X-Content-Sha256": str(Sha256Digest(shard.sha256))}
    if _etag_matches(request, etag):
        return web.Response(status=304, headers=headers)
    store = request.app[BLOCKSTORE]
    it = await asyncio.to_thread(store.iter_file_bytes, shard.cid)
    batch = await asyncio.to_thread(next_batch, it)  # a bad first leaf is still a clean JSON error
    resp = web.StreamResponse(headers=headers)
    resp.content_type = "application/octet-stream"
    resp.content_length = shard.size
    await resp.prepare(request)
    if request.method == "HEAD":  # headers only: a body would be read as the connection's next response
        return resp
    try:
        while batch:
            await resp.write(batch)
            record_pull_bytes("api", len(batch))
            batch = await asyncio.to_thread(next_batch, it)
    except Exception as e:
        # Headers are gone: the only honest signal left is a cut connection (the client sees a short body).
        log.error("stopped serving %s/%s: %s", cid, shard.filename, getattr(e, "message", e))
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write_eof()
    return resp
