"""IPNS over HTTP: signed records of the registry's channels (Trustless Gateway ``/ipns/{name}``) and a validator.

``GET /ipns/{name}`` answers only the verifiable response type, the record itself
(``Accept: application/vnd.ipfs.ipns-record`` or ``?format=ipns-record``); a client checks it with
the name alone. ``POST /v1/ipns/validate?name=`` checks a record from anywhere and says why it is bad.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from registry.api import formats
from registry.api.auth import read_gate
from registry.api.endpoint import MODEL, NS, READ_ERRORS, TAG, Param, endpoint
from registry.api.keys import IPNS_CHANNELS
from registry.api.packs import model_ref
from registry.db.base import utcnow
from registry.errors import BadRequest, NotFound, RegistryError
from registry.ipns.channels import IpnsChannels, ServedRecord
from registry.ipns.name import parse_ipns_name
from registry.ipns.record import MAX_RECORD_BYTES, WITHDRAWN_PATH, check_sequence, validate_record
from registry.names import check_tag
from registry.trust.errors import IpnsRecordTooLarge

routes = web.RouteTableDef()
IPNS_RECORD = "application/vnd.ipfs.ipns-record"


class NotAcceptable(RegistryError):
    """This gateway serves IPNS names only as signed records."""

    code = "not_acceptable"
    http_status = 406


class ChannelOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    channel: str
    name: str = Field(description="IPNS name, CIDv1 libp2p-key in base36 (k51...)")
    sequence: int
    value: str = Field(description="/ipfs/<pack CID>, or WITHDRAWN_PATH when withdrawn")
    withdrawn: bool = Field(
        description="the channel's pointer was removed (un-curated, or degraded with nothing to roll back "
        "to): the newest record is a signed withdrawal, not a pack"
    )
    validity: datetime = Field(description="EOL of the record")
    ttl_s: int
    published_at: datetime | None = Field(description="when an IPFS node last took it; null: none yet")
    record_url: str


class RecordVerdictOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    valid: bool
    name: str
    value: str
    sequence: int
    validity: datetime
    ttl_s: float
    current_sequence: int | None = Field(description="the newest sequence this registry holds for the name")


def channels(request: web.Request) -> IpnsChannels:
    return request.app[IPNS_CHANNELS]


def _wants_record(request: web.Request) -> bool:
    if request.query.get("format") == "ipns-record":
        return True
    accept = request.headers.get("Accept", "")
    return any(part.split(";", 1)[0].strip().lower() == IPNS_RECORD for part in accept.split(","))


def _max_age(rec: ServedRecord) -> int:
    left = int((rec.validity - utcnow()).total_seconds())
    return max(0, min(rec.ttl_s, left))


@routes.get("/ipns/{name}")
@endpoint(
    "A channel's signed IPNS record (Trustless Gateway)",
    tag="ipns",
    responses={200: IPNS_RECORD},
    params=(
        Param("name", "path", {"type": "string", "pattern": formats.IPNS_NAME}, "k51... (or a peer id)"),
        Param("format", "query", {"enum": ["ipns-record"]}, "the same as the Accept header"),
        Param("Accept", "header", {"enum": [IPNS_RECORD]}, "or give ?format=ipns-record", required=True),
    ),
    errors=(400, 401, 404, 406),
    operation_id="getIpnsRecord",
)
async def ipns_record(request: web.Request) -> web.Response:
    """The newest signed record of a channel's IPNS name (k51... or the base58 peer-id form)."""
    await read_gate(request)
    name = request.match_info["name"]
    fmt = request.query.get("format")
    if fmt not in (None, "ipns-record") or not _wants_record(request):
        raise NotAcceptable(
            f"this gateway serves /ipns/ names only as signed records: send 'Accept: {IPNS_RECORD}' "
            "or add ?format=ipns-record, then verify the record and fetch /ipfs/<CID> it names",
            name=name[:80],
        )
    rec = await channels(request).served(name)
    return web.Response(
        body=rec.record,
        content_type=IPNS_RECORD,
        headers={
            "Cache-Control": f"public, max-age={_max_age(rec)}",
            "Content-Disposition": f'attachment; filename="{rec.name}.ipns-record"',
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept",
            "ETag": f'"{rec.name}.{rec.sequence}"',
        },
    )


@routes.get("/v1/models/{namespace}/{model}/channels/{tag}")
@endpoint(
    "The IPNS name and newest record of ns/model@tag",
    tag="ipns",
    responses={200: ChannelOut},
    params=(NS, MODEL, TAG),
    errors=READ_ERRORS,
    operation_id="getChannel",
)
async def channel(request: web.Request) -> web.Response:
    """The IPNS name of ``ns/model@tag`` and its newest record's content (not the record bytes)."""
    await read_gate(request)
    ref = model_ref(request)
    rec = await channels(request).for_channel(ref, check_tag(request.match_info["tag"]))
    out = ChannelOut(
        channel=rec.channel,
        name=rec.name,
        sequence=rec.sequence,
        value=rec.value,
        withdrawn=rec.value == WITHDRAWN_PATH,
        validity=rec.validity,
        ttl_s=rec.ttl_s,
        published_at=rec.published_at,
        record_url=f"/ipns/{rec.name}?format=ipns-record",
    )
    return web.json_response(text=out.model_dump_json())


@routes.post("/v1/ipns/validate")
@endpoint(
    "Validate an IPNS record; refusals name the reason",
    tag="ipns",
    responses={200: RecordVerdictOut},
    params=(Param("name", "query", {"type": "string", "pattern": formats.IPNS_NAME}, required=True),),
    body="application/octet-stream",  # the record bytes (any content type is read)
    body_max=MAX_RECORD_BYTES,
    errors=(400, 401, 409, 413),
    operation_id="validateIpnsRecord",
)
async def validate(request: web.Request) -> web.Response:
    """Validate a record (the raw bytes as the body) for ``?name=``: 200 with what it says, else the reason.

    Refusals: too large (413, before parsing), malformed, V1-only, bad V2 signature, V1 fields that
    disagree with the signed data, expired, a key not of the name (400), and for a name of this
    registry a sequence not higher than the one it holds (409).
    """
    await read_gate(request)
    name = request.query.get("name")
    if not name:
        raise BadRequest("give the record's IPNS name as ?name=k51...")
    parsed = parse_ipns_name(name)
    declared = request.content_length
    if declared is not None and declared > MAX_RECORD_BYTES:
        raise IpnsRecordTooLarge(
            f"IPNS record is {declared} bytes; the limit is {MAX_RECORD_BYTES}",
            size=declared,
            limit=MAX_RECORD_BYTES,
        )
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > MAX_RECORD_BYTES:
            raise IpnsRecordTooLarge(
                f"IPNS record is more than {MAX_RECORD_BYTES} bytes", size=len(body), limit=MAX_RECORD_BYTES
            )
    rec = validate_record(name, bytes(body), utcnow())
    current = None
    try:
        current = (await channels(request).served(parsed.canonical)).sequence
    except NotFound:
        pass
    check_sequence(rec, current)
    out = RecordVerdictOut(
        valid=True,
        name=rec.name,
        value=rec.path,
        sequence=rec.sequence,
        validity=rec.expires_at,
        ttl_s=rec.ttl_ns / 1e9,
        current_sequence=current,
    )
    return web.json_response(text=out.model_dump_json())
