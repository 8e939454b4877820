"""A pack's page: manifest, files and shards with CIDs and sizes, signature verdicts, the validation report
(behavioural results when present), the replica matrix and the state history. The same services and the same
host-path scrubbing as ``/v1/packs/{cid}``, ``/validation`` and ``/replicas``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from registry.api.auth import services
from registry.api.gate import gate, view_out
from registry.api.listing import pack_model
from registry.api.nodes import matrix, replication
from registry.api.packs import render_pack
from registry.names import ModelRef, normalize_cid
from registry.web.events_panel import last_event_id
from registry.web.pages import pull_line
from registry.web.render import page, render
from registry.web.session import web_read_gate

routes = web.RouteTableDef()
MANIFEST_FIELDS = ("format", "model_name", "model_version", "license", "description", "created_at")


def _manifest_summary(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    """The manifest's headline fields that are plain values (the whole document is shown below them)."""
    return [
        (k, manifest[k])
        for k in MANIFEST_FIELDS
        if k in manifest and isinstance(manifest[k], (str, int, float, bool))
    ]


def _report_parts(report: dict[str, Any] | None) -> dict[str, Any]:
    """The parts of the sandbox's report the page shows as tables; anything else is in the raw JSON."""
    if not isinstance(report, dict):
        return {}
    smoke = report.get("smoke") if isinstance(report.get("smoke"), dict) else {}
    behaviour = report.get("behaviour") if isinstance(report.get("behaviour"), dict) else None
    checks = smoke.get("checks") if isinstance(smoke, dict) else None
    out: dict[str, Any] = {
        "smoke_checks": [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []
    }
    if behaviour is not None:
        prompts = behaviour.get("prompts")
        perplexity = behaviour.get("perplexity")
        out["behaviour"] = {
            "passed": behaviour.get("passed"),
            "budget_exhausted": behaviour.get("budget_exhausted"),
            "seconds": behaviour.get("seconds"),
            "prompts": [p for p in prompts if isinstance(p, dict)] if isinstance(prompts, list) else [],
            "perplexity": perplexity if isinstance(perplexity, dict) else None,
        }
    return out


@routes.get("/ui/packs/{cid}")
@page
async def pack_page(request: web.Request) -> web.Response:
    """The pack listed under ``?model=ns/name`` (needed only when several models list the CID)."""
    await web_read_gate(request)
    cid = normalize_cid(request.match_info["cid"])
    model = pack_model(request)
    detail = json.loads(render_pack(await services(request).browse.pack(cid, model)))
    ref = ModelRef(detail["namespace"], detail["model"])
    validation = view_out(await gate(request).view(cid, model or ref)).model_dump(mode="json")
    run = validation.get("validation") or {}
    try:
        replicas = matrix(await replication(request).pack_replication(cid)).model_dump(mode="json")
    except LookupError:
        replicas = None
    manifest = detail.get("manifest") if isinstance(detail.get("manifest"), dict) else {}
    return render(
        request,
        "pack.html",
        {
            "nav": "models",
            "ref": ref,
            "pack": detail,
            "history": list(reversed(detail["history"])),  # newest first, as the live rows arrive
            "manifest_fields": _manifest_summary(manifest),
            "validation": validation,
            "run": run,
            "report": _report_parts(run.get("report")),
            "replicas": replicas,
            "pulls": [pull_line(ref, tag) for tag in detail["pointers"]],
            "events_after": await last_event_id(request),  # the page's live updates start here
        },
    )
