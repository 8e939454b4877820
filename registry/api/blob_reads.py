"""Reads of uploaded bytes: a blob no pack references yet is private to its uploader.

``blob_read_gate`` runs before ``/ipfs/{cid}`` (handed to ``pinner.gateway`` as its guard) and
``GET /v1/blobs/{cid}``: first the registry's read gate (``server.read_requires_token``), then the blob rule
(``BlobService.readable_by``). Anyone else gets the same 404 as for bytes that are not stored, so an upload's
existence does not leak; a token that fails to authenticate counts as anonymous here (the read gate has
already refused it when reads need a token).
"""

from __future__ import annotations

from aiohttp import web

from pinner.cids import cid_str, parse_cid
from pinner.content_errors import BlockNotFound, InvalidCid
from registry.accounts.principal import Principal
from registry.api.auth import bearer_token, read_gate, services
from registry.errors import Unauthorized


async def optional_principal(request: web.Request) -> Principal | None:
    """The caller's principal when a valid token is sent, else None (never raises for a bad token)."""
    try:
        token = bearer_token(request)
        return await services(request).auth.authenticate(token) if token is not None else None
    except Unauthorized:
        return None


async def may_read(request: web.Request, cid: str) -> bool:
    """Whether the caller may read the bytes under ``cid`` (canonical text), by the blob rule alone."""
    blobs = services(request).blobs
    return await blobs.readable_by(cid, None) or await blobs.readable_by(
        cid, await optional_principal(request)
    )


async def blob_read_gate(request: web.Request) -> None:
    """The read gate, then BlockNotFound (404) when the CID is an unreferenced blob the caller did not upload."""
    await read_gate(request)
    try:
        cid = cid_str(parse_cid(request.match_info["cid"]))
    except InvalidCid:
        return  # the route answers a malformed CID itself
    if not await may_read(request, cid):
        raise BlockNotFound(f"block {cid} is not in this store", cid=cid)
