"""``modelpack pin add|ls|show|rm|replace``: a client of any IPFS Pinning Service API endpoint (spec v1.0.0).

The endpoint is ``--endpoint`` (env ``MODELPACK_PSA_ENDPOINT``), by default this registry's own API
(``--registry`` + ``/psa``); ``--token`` (env ``MODELPACK_TOKEN``) is a token with the ``pin`` scope. What
the endpoint refuses is one sentence and exit code 1; malformed options are usage errors (exit code 2).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import click
from rich.console import Console

from registry.cli.options import remote_options
from registry.cli.output import emit, errors, print_json, say, table
from registry.client import ClientError, RegistryClient, q

PSA_PATH = "/psa"
STATUSES = ("queued", "pinning", "pinned", "failed")
MATCHES = ("exact", "iexact", "partial", "ipartial")
WAIT_POLL_S = 1.0


class PsaClient(RegistryClient):
    """The Pinning Service API at ``endpoint``: the registry client's transport, the spec's paths."""

    def __enter__(self) -> PsaClient:
        return self

    def add(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", "/pins", body))

    def get(self, requestid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/pins/{q(requestid)}"))

    def list(self, query: list[tuple[str, str]]) -> dict[str, Any]:
        return dict(self._json("GET", "/pins" + (f"?{urlencode(query)}" if query else "")))

    def replace(self, requestid: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", f"/pins/{q(requestid)}", body))

    def delete(self, requestid: str) -> None:
        self._read("DELETE", f"/pins/{q(requestid)}", limit=64 * 1024)


def psa_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--endpoint",
        envvar="MODELPACK_PSA_ENDPOINT",
        metavar="URL",
        help="Pinning Service API endpoint (env MODELPACK_PSA_ENDPOINT; default: the registry's URL + /psa).",
    )(f)
    return remote_options()(f)


def _connect(endpoint: str | None, registry: str, token: str | None) -> PsaClient:
    if not token:
        raise click.UsageError(
            "this needs a token with the pin scope: --token TOKEN (or set MODELPACK_TOKEN)"
        )
    try:
        return PsaClient(endpoint or registry.rstrip("/") + PSA_PATH, token)
    except ClientError as e:
        raise click.UsageError(e.message.replace("registry URL", "endpoint URL")) from None


def _meta(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--meta")
        out[key] = value
    return out


def _body(cid: str, name: str | None, origins: tuple[str, ...], meta: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {"cid": cid}
    if name is not None:
        body["name"] = name
    if origins:
        body["origins"] = list(origins)
    if meta:
        body["meta"] = _meta(meta)
    return body


def _wait(c: PsaClient, status: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Polls the request until it is pinned or failed; ClickException when ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while status["status"] not in ("pinned", "failed"):
        if time.monotonic() >= deadline:
            details = status.get("info", {}).get("status_details", "")
            raise click.ClickException(
                f"pin {status['requestid']} is still {status['status']} after {timeout_s:g}s"
                + (f" ({details})" if details else "")
            )
        time.sleep(WAIT_POLL_S)
        status = c.get(status["requestid"])
    return status


def _report(status: dict[str, Any], verb: str) -> None:
    details = status.get("info", {}).get("status_details")
    note = f"{verb} {status['pin']['cid']}: {status['status']}" + (f" ({details})" if details else "")
    say(status["requestid"], note)
    if status["status"] == "failed":
        raise click.exceptions.Exit(1)


pin_fields = [
    click.option("--name", help="A name for the pin (at most 255 characters)."),
    click.option("--origin", "origins", multiple=True, metavar="MULTIADDR", help="A peer that has it."),
    click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable)."),
    click.option("--wait", is_flag=True, help="Wait until it is pinned or failed (exit 1 when failed)."),
    click.option(
        "--timeout",
        "timeout_s",
        type=click.FloatRange(min=0),
        default=600.0,
        show_default=True,
        help="Seconds --wait waits.",
    ),
]


def with_pin_fields(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(pin_fields):
        f = option(f)
    return f


@click.group()
def pin() -> None:
    """Pin CIDs through a Pinning Service API: this registry's (default) or any other."""


@pin.command("add")
@click.argument("cid")
@with_pin_fields
@psa_options
def add(
    cid: str,
    name: str | None,
    origins: tuple[str, ...],
    meta: tuple[str, ...],
    wait: bool,
    timeout_s: float,
    endpoint: str | None,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Ask the service to pin CID; prints the request id (stdout) and its status (stderr)."""
    body = _body(cid, name, origins, meta)
    with errors(), _connect(endpoint, registry, token) as c:
        status = c.add(body)
        if wait:
            status = _wait(c, status, timeout_s)
    if as_json:
        print_json(status)
        return
    _report(status, "pin")


@pin.command("replace")
@click.argument("requestid")
@click.argument("cid")
@with_pin_fields
@psa_options
def replace(
    requestid: str,
    cid: str,
    name: str | None,
    origins: tuple[str, ...],
    meta: tuple[str, ...],
    wait: bool,
    timeout_s: float,
    endpoint: str | None,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Replace pin REQUESTID with a pin of CID (the old one goes once the new one is pinned)."""
    body = _body(cid, name, origins, meta)
    with errors(), _connect(endpoint, registry, token) as c:
        status = c.replace(requestid, body)
        if wait:
            status = _wait(c, status, timeout_s)
    if as_json:
        print_json(status)
        return
    _report(status, "replaced by")


@pin.command("show")
@click.argument("requestid")
@psa_options
def show(requestid: str, endpoint: str | None, registry: str, token: str | None, as_json: bool) -> None:
    """The status of pin REQUESTID."""
    with errors(), _connect(endpoint, registry, token) as c:
        status = c.get(requestid)
    emit(as_json, status, lambda: _print_one(status))


def _print_one(status: dict[str, Any]) -> None:
    pin_ = status["pin"]
    click.echo(f"{status['requestid']}: {status['status']} (created {status['created']})")
    click.echo(f"  cid: {pin_['cid']}" + (f"  name: {pin_['name']}" if pin_.get("name") else ""))
    for key, value in sorted((status.get("info") or {}).items()):
        click.echo(f"  {key}: {value}")
    for d in status.get("delegates") or ():
        click.echo(f"  delegate: {d}")


@pin.command("ls")
@click.option("--cid", "cids", multiple=True, help="Only these CIDs (repeatable, at most 10).")
@click.option("--name", help="Only pins with this name (see --match).")
@click.option("--match", type=click.Choice(MATCHES), help="How --name matches (default exact).")
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Default: pinned only."
)
@click.option("--before", metavar="TIMESTAMP", help="Created before (RFC 3339, e.g. 2026-01-01T00:00:00Z).")
@click.option("--after", metavar="TIMESTAMP", help="Created after (RFC 3339).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Only pins with this metadata.")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@psa_options
def ls(
    cids: tuple[str, ...],
    name: str | None,
    match: str | None,
    statuses: tuple[str, ...],
    before: str | None,
    after: str | None,
    meta: tuple[str, ...],
    limit: int,
    endpoint: str | None,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """List pins, newest first (as the service filters them: pinned ones unless --status says otherwise)."""
    query: list[tuple[str, str]] = [("cid", ",".join(cids))] if cids else []
    for key, value in (("name", name), ("match", match), ("before", before), ("after", after)):
        if value is not None:
            query.append((key, value))
    if statuses:
        query.append(("status", ",".join(statuses)))
    if meta:
        query.append(("meta", json.dumps(_meta(meta))))
    query.append(("limit", str(limit)))
    with errors(), _connect(endpoint, registry, token) as c:
        page = c.list(query)
    if as_json:
        print_json(page)
        return
    results = page["results"]
    if not results:
        click.echo("no pins match")
        return
    grid = table("requestid", "status", "cid", "name", "created")
    for r in results:
        grid.add_row(r["requestid"], r["status"], r["pin"]["cid"], r["pin"].get("name") or "-", r["created"])
    Console().print(grid)
    if page["count"] > len(results):
        click.echo(f"{len(results)} of {page['count']} shown (--limit, --before)", err=True)


@pin.command("rm")
@click.argument("requestid")
@psa_options
def rm(requestid: str, endpoint: str | None, registry: str, token: str | None, as_json: bool) -> None:
    """Remove pin REQUESTID (its CID is unpinned where nothing else needs it)."""
    with errors(), _connect(endpoint, registry, token) as c:
        c.delete(requestid)
    emit(as_json, {"requestid": requestid, "removed": True}, lambda: click.echo(f"removed pin {requestid}"))
