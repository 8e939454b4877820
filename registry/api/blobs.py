"""``/v1/blobs/{cid}``: does the registry hold these bytes, and the streaming shard upload."""

from __future__ import annotations

from aiohttp import web

from model_core.format.digest import Sha256Digest
from model_core.format.fields import UNIXFS_PROFILES
from registry.api import formats
from registry.api.auth import read_gate, require_principal, services
from registry.api.blob_reads import may_read
from registry.api.endpoint import CID, READ_ERRORS, Param, endpoint
from registry.api.middleware import error_response
from registry.api.schemas import BlobOut
from registry.errors import NotFound
from registry.names import normalize_cid
from registry.packs.blobs import BlobInfo, TooManyUploads, UploadsBusy

routes = web.RouteTableDef()


def blob_out(info: BlobInfo) -> BlobOut:
    return BlobOut(
        cid=info.cid,
        sha256=str(Sha256Digest(info.sha256)),
        size=info.size,
        unixfs_profile=info.unixfs_profile,
    )


@routes.get("/v1/blobs/{cid}")
@endpoint(
    "Is a file with this UnixFS CID uploaded?",
    tag="blobs",
    responses={200: BlobOut},
    params=(CID,),
    errors=READ_ERRORS,
)
async def get_blob(request: web.Request) -> web.Response:
    """Whether the registry holds a verified file with this UnixFS CID (publish uploads only what is missing)."""
    await read_gate(request)
    cid = normalize_cid(request.match_info["cid"])
    info = await services(request).blobs.get(cid)
    if info is None or not await may_read(request, cid):  # an unreferenced upload: its uploader's only
        raise NotFound(f"no uploaded file with CID {cid}", cid=cid)
    return web.json_response(text=blob_out(info).model_dump_json())


@routes.put("/v1/blobs/{cid}")
@endpoint(
    "Upload a shard's bytes (streamed; committed only if they match)",
    tag="blobs",
    responses={200: BlobOut, 201: BlobOut},
    params=(
        CID,
        Param("sha256", "query", {"type": "string", "pattern": formats.SHA256}, "expected sha256"),
        Param("profile", "query", {"enum": list(UNIXFS_PROFILES)}, "UnixFS profile the CID was built with"),
    ),
    body="application/octet-stream",
    auth=True,
    errors=(400, 401, 403, 408, 413, 422, 429, 503),
)
async def put_blob(request: web.Request) -> web.Response:
    """Streams the body into the store; commits only if it hashes to the CID (and ``sha256`` when given)."""
    principal = await require_principal(request)
    svc = services(request)
    try:
        info, created = await svc.blobs.ingest(
            principal,
            request.match_info["cid"],
            request.content.iter_any(),
            sha256=request.query.get("sha256"),
            profile=request.query.get("profile"),
            declared_size=request.content_length,
        )
    except (TooManyUploads, UploadsBusy) as e:  # busy, not wrong: say when to come back
        retry = str(e.details.get("retry_after_s", 5))
        status = type(e).http_status
        return error_response(status, e.code, e.message, e.details, headers={"Retry-After": retry})
    return web.json_response(text=blob_out(info).model_dump_json(), status=201 if created else 200)
