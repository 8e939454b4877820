"""A Hugging Face Hub-compatible read API: ``HF_ENDPOINT=http://registry`` and the stock ``huggingface_hub`` /
``transformers`` clients pull packs, every byte streamed from the blockstore with its leaves verified.

Routes (what the clients call; read from huggingface_hub's own code):
  GET /api/models/{ns}/{model}                     model info at ``main`` (see hfhub_core for revisions)
  GET /api/models/{ns}/{model}/revision/{rev}      model info: ``id``, ``sha``, ``siblings`` with LFS sha256...
  GET /api/models/{ns}/{model}/tree/{rev}[/{path}] the file list (flat: packs have no folders)
  GET|HEAD /{ns}/{model}/resolve/{rev}/{filename}  the file, served directly (no redirect), ranges included
  any other method under /api/                     403: this endpoint is read-only

A foreign API like the Pinning Service API: not in the OpenAPI document; errors in the Hub's shape
(``X-Error-Code``: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from registry.api.hfhub_core import (
    HUB_DEFAULT_REVISION,
    HubError,
    HubRevision,
    hub_error,
    hub_read_gate,
    iso,
    repo_ref,
    resolve_revision,
    translate,
)
from registry.api.keys import BLOCKSTORE
from registry.api.packs import next_batch
from registry.metrics import record_pull_bytes

routes = web.RouteTableDef()
log = logging.getLogger("modelpack.hfhub")

TREE_PAGE: Final = 1000  # entries per tree page, as the Hub
IMMUTABLE: Final = "public, max-age=31536000, immutable"
_RANGE: Final = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")
MODEL_BASE: Final = "/api/models/{namespace}/{model}"

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def hub_route(handler: Route) -> Route:
    """Errors raised under a Hub route leave in the Hub's shape (the registry's own middleware never sees them)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as e:
            return translate(e).response()

    return wrapped


async def _revision(request: web.Request, revision: str) -> HubRevision:
    await hub_read_gate(request)
    ref = repo_ref(request.match_info["namespace"], request.match_info["model"])
    return await resolve_revision(request, ref, revision)


def _model_info(rev: HubRevision) -> dict[str, Any]:
    siblings = [{"rfilename": f.filename, "size": f.size, "blobId": f.oid, "lfs": f.lfs()} for f in rev.files]
    names = {f.filename for f in rev.files}
    return {
        "_id": rev.commit,
        "id": rev.repo_id,
        "modelId": rev.repo_id,
        "author": rev.ref.namespace,
        "sha": rev.commit,
        "lastModified": iso(rev.created_at),
        "createdAt": iso(rev.model_created_at),
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": ["modelpack", *(["safetensors"] if any(n.endswith(".safetensors") for n in names) else [])],
        "library_name": "transformers" if "config.json" in names else None,
        "siblings": siblings,
        "usedStorage": sum(f.size for f in rev.files),
        # ours, beside the Hub's fields: which pack this revision is, and its state
        "modelpack": {"pack": rev.cid, "state": rev.state, "revision": rev.revision},
    }


@routes.get(MODEL_BASE)
@hub_route
async def model_info(request: web.Request) -> web.Response:
    rev = await _revision(request, HUB_DEFAULT_REVISION)
    return web.json_response(_model_info(rev), headers={"X-Repo-Commit": rev.commit})


@routes.get(MODEL_BASE + "/revision/{revision}")
@hub_route
async def model_info_at(request: web.Request) -> web.Response:
    rev = await _revision(request, request.match_info["revision"])
    return web.json_response(_model_info(rev), headers={"X-Repo-Commit": rev.commit})


def _page_start(request: web.Request) -> int:
    raw = request.query.get("cursor", "0")
    if not raw.isdigit() or len(raw) > 9:
        raise HubError(400, f"cursor {raw[:40]!r} is not one this endpoint returned")
    return int(raw)


@routes.get(MODEL_BASE + "/tree/{revision}")
@routes.get(MODEL_BASE + "/tree/{revision}/{path:.+}")
@hub_route
async def tree(request: web.Request) -> web.Response:
    rev = await _revision(request, request.match_info["revision"])
    path = request.match_info.get("path", "").strip("/")
    if path:  # a pack is one flat folder: there are no subfolders to list
        raise HubError(
            404,
            f"{path[:120]!r} does not exist in {rev.repo_id} at revision {rev.revision}",
            "EntryNotFound",
            {"X-Repo-Commit": rev.commit},
        )
    expand = request.query.get("expand", "").lower() in ("1", "true")
    start = _page_start(request)
    page = rev.files[start : start + TREE_PAGE]
    items = []
    for f in page:
        item: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": f.filename}
        lfs = f.lfs()
        item["lfs"] = {"oid": lfs["sha256"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
        if expand:
            item["lastCommit"] = {"id": rev.commit, "title": f"pack {rev.cid}", "date": iso(rev.created_at)}
        items.append(item)
    headers = {"X-Repo-Commit": rev.commit}
    if start + TREE_PAGE < len(rev.files):
        nxt = request.url.update_query(cursor=str(start + TREE_PAGE))
        headers["Link"] = f'<{nxt}>; rel="next"'
    return web.json_response(items, headers=headers)


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end-exclusive) of a single ``bytes=`` range; None when absent or not one we honour (then the
    whole file is served, as RFC 9110 allows). Out of bounds: HubError 416."""
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if not m or m.groups() == ("", ""):
        return None
    first, last = m.groups()
    if first == "":
        n = int(last)
        if n == 0:
            raise _unsatisfiable(header, size)
        return max(size - n, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise _unsatisfiable(header, size)
    return start, end


def _unsatisfiable(header: str, size: int) -> HubError:
    return HubError(
        416,
        f"Range {header.strip()[:60]!r} is not satisfiable: the file has {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )


@routes.get("/{namespace}/{model}/resolve/{revision}/{filename:.+}")
@hub_route
async def resolve_file(request: web.Request) -> web.StreamResponse:
    """The file's bytes (HEAD: its metadata), with the headers ``hf_hub_download`` reads."""
    rev = await _revision(request, request.match_info["revision"])
    f = rev.file(request.match_info["filename"])
    etag = f'"{f.sha256}"'
    headers = {
        "X-Repo-Commit": rev.commit,
        "ETag": etag,
        "X-Linked-Etag": etag,
        "X-Linked-Size": str(f.size),
        "Accept-Ranges": "bytes",
        "Cache-Control": IMMUTABLE if rev.immutable else "no-cache",
        "Content-Disposition": f'inline; filename="{f.filename}"',
        "X-Modelpack-Pack": rev.cid,
    }
    inm = request.headers.get("If-None-Match")
    if inm is not None and etag in [t.strip().removeprefix("W/") for t in inm.split(",")]:
        return web.Response(status=304, headers=headers)
    status, start, end = 200, 0, f.size
    rng = _range(request.headers.get("Range"), f.size)
    if rng is not None:
        status, (start, end) = 206, rng
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_type = "application/octet-stream"
    resp.content_length = end - start
    if request.method == "HEAD":  # headers only: a body would be read as the connection's next response
        await resp.prepare(request)
        return resp
    store = request.app[BLOCKSTORE]
    it = await asyncio.to_thread(store.iter_file_bytes, f.cid, start, end)
    batch = await asyncio.to_thread(next_batch, it)  # a bad first leaf is still a clean error
    await resp.prepare(request)
    try:
        while batch:
            await resp.write(batch)
            record_pull_bytes("api", len(batch))
            batch = await asyncio.to_thread(next_batch, it)
    except Exception as e:
        # Headers are gone: the only honest signal left is a cut connection (the client resumes with a Range).
        log.error("stopped serving %s/%s: %s", rev.cid, f.filename, getattr(e, "message", e))
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


@routes.route("*", "/api/{tail:.*}")
@hub_route
async def not_served(request: web.Request) -> web.Response:
    """Writes (create repo, upload, commit...) are refused; other reads under /api/ are not served."""
    path = request.path[:120]
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        return hub_error(
            403,
            f"{request.method} {path}: this registry is a read-only Hugging Face endpoint; "
            "publish packs with `modelpack publish`",
        )
    return hub_error(
        404,
        f"{path} is not served here: this endpoint serves /api/models/NS/MODEL[/revision/REV | /tree/REV] "
        "and /NS/MODEL/resolve/REV/FILE",
    )
