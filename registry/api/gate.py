"""The validation gate over HTTP: request a validation, read the report, curate or un-curate by hand (admin)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from pinner.cids import cid_str, parse_cid
from registry.api.auth import read_gate, require_principal
from registry.api.endpoint import CID, READ_ERRORS, H, endpoint, read_body
from registry.api.keys import GATE
from registry.api.listing import AMBIGUOUS, PACK_MODEL, pack_model
from registry.errors import BadRequest
from registry.gate.curation import CurationOutcome
from registry.gate.hostpaths import scrub
from registry.gate.validation import ValidationService, ValidationView

routes = web.RouteTableDef()
BODY_MAX = 8 * 1024


def gate(request: web.Request) -> ValidationService:
    return request.app[GATE]


def _cid(request: web.Request) -> str:
    text = request.match_info["cid"]
    try:
        return cid_str(parse_cid(text))
    except Exception:  # multiformats raises several unrelated types for bad input
        raise BadRequest(f"{text!r} is not a CID", cid=text) from None


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReasonIn(BaseModel):
    """Parsed here; a missing or blank reason is the curation service's to refuse (400 ``reason_required``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"required": ["reason"]})
    reason: Annotated[
        str | None,
        Field(max_length=1024),
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 1024, "pattern": r"\S"}),
    ] = None


class ValidationJobOut(_Out):
    cid: str
    job_id: int
    status: str


class ValidationRunOut(_Out):
    verdict: str  # pass | invalid_pack | smoke_failed | behavior_failed | out_of_memory | timed_out | crashed | running
    reason: str | None
    started_at: datetime | None
    finished_at: datetime | None
    report: dict[str, Any] | None  # the sandbox's full JSON report


class ValidationStateOut(_Out):
    cid: str
    state: str
    state_reason: str | None
    flagged: str | None
    validation: ValidationRunOut | None


class CurationOut(_Out):
    cid: str
    status: str  # curated | withheld | not_validated | untrusted | waiting_replicas
    reasons: list[str]
    pointer_moved: bool
    pointer: str | None  # where ns/model@curated points now


def view_out(v: ValidationView) -> ValidationStateOut:
    run = None
    if v.verdict is not None:
        run = ValidationRunOut(
            verdict=v.verdict,
            reason=scrub(v.reason),
            started_at=v.started_at,
            finished_at=v.finished_at,
            report=scrub(v.report),  # no host paths in a public answer (registry.gate.hostpaths)
        )
    return ValidationStateOut(
        cid=v.cid, state=v.state, state_reason=scrub(v.state_reason), flagged=v.flagged, validation=run
    )


def outcome_out(o: CurationOutcome) -> CurationOut:
    return CurationOut(
        cid=o.cid, status=o.status, reasons=list(o.reasons), pointer_moved=o.pointer_moved, pointer=o.pointer
    )


def _dump(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


@routes.post("/v1/packs/{cid}/validate")
@endpoint(
    "Enqueue a validation of the pack (member of its namespace, or admin)",
    tag="gate",
    responses={202: ValidationJobOut},
    params=(CID, PACK_MODEL),
    auth=True,
    errors=(400, 401, 403, 404, 409, 429),
    operation_id="validatePack",
)
async def request_validation(request: web.Request) -> web.Response:
    """Enqueue a validation (a member of the pack's namespace, or an admin); 202 with the job id."""
    principal = await require_principal(request)
    cid = _cid(request)
    job = await gate(request).request(principal, cid, pack_model(request))
    return _dump(ValidationJobOut(cid=cid, job_id=job, status="queued"), 202)


@routes.get("/v1/packs/{cid}/validation")
@endpoint(
    "The pack's state and its newest validation report",
    tag="gate",
    responses={200: ValidationStateOut},
    params=(CID, PACK_MODEL),
    errors=(*READ_ERRORS, AMBIGUOUS),
)
async def get_validation(request: web.Request) -> web.Response:
    """The pack's state and its newest validation report (verdict, reason, the sandbox's full report)."""
    await read_gate(request)
    return _dump(view_out(await gate(request).view(_cid(request), pack_model(request))))


async def _reason(request: web.Request) -> str | None:
    """The body's ``reason`` (without a body, None: the services refuse a missing reason with a clear 400)."""
    if not request.can_read_body:
        return None
    return (await read_body(request, ReasonIn, "curation")).reason


def _curation_endpoint(summary: str, operation_id: str) -> Callable[[H], H]:
    """The declaration shared by curate and uncurate: a CID, a ``{"reason"}`` body, an admin token."""
    return endpoint(
        summary,
        tag="gate",
        responses={200: CurationOut},
        params=(CID, PACK_MODEL),
        body=ReasonIn,
        body_max=BODY_MAX,
        auth=True,
        errors=(400, 401, 403, 404, 409, 413),
        operation_id=operation_id,
    )


@routes.post("/v1/packs/{cid}/curate")
@_curation_endpoint(
    "Admin: point ns/model@curated at this validated, trusted, replicated pack (reason required)",
    "curatePack",
)
async def curate(request: web.Request) -> web.Response:
    """Admin: point ``@curated`` at this pack (it must pass the rule); ``{"reason": ...}`` required."""
    principal = await require_principal(request)
    cid = _cid(request)
    out = await gate(request).curation.curate(principal, cid, await _reason(request), pack_model(request))
    return _dump(outcome_out(out))


@routes.post("/v1/packs/{cid}/uncurate")
@_curation_endpoint(
    "Admin: withdraw a curated pack; the pointer rolls back (reason required)", "uncuratePack"
)
async def uncurate(request: web.Request) -> web.Response:
    """Admin: withdraw a curated pack (the pointer rolls back or is removed); ``{"reason": ...}`` required."""
    principal = await require_principal(request)
    cid = _cid(request)
    out = await gate(request).curation.uncurate(principal, cid, await _reason(request), pack_model(request))
    return _dump(outcome_out(out))
