"""``modelpack events``: the registry's event feed, one line per event (or JSON lines), and ``--follow`` to
keep printing them as they happen (the SSE stream, resumed from the last id after a reconnect)."""

from __future__ import annotations

import json
from typing import Any

import click

from registry.cli.options import connect, remote_options
from registry.cli.output import errors


def _line(e: dict[str, Any]) -> str:
    p = e.get("payload") or {}
    what = e.get("model") or p.get("node") or p.get("key_id") or e.get("namespace") or ""
    detail = p.get("reason") or p.get("status_details") or ""
    if e["type"] == "pointer.moved":
        detail = f"{p.get('tag')}: {p.get('from') or '(unset)'} -> {p.get('to') or '(removed)'}"
    pack = f" {e['pack']}" if e.get("pack") and e["type"] != "pointer.moved" else ""
    return f"{e['id']:>8} {e['created_at']} {e['type']:<22} {what}{pack}  {str(detail)[:160]}".rstrip()


@click.command()
@click.option("--after", type=click.IntRange(min=0), help="Only events with a larger id.")
@click.option("--type", "types", multiple=True, help="Only these event types (repeat, or comma-join).")
@click.option("--namespace", help="Only events of this namespace.")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=100, show_default=True, help="Without --follow."
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they happen (Ctrl-C stops).")
@remote_options()
def events(
    after: int | None,
    types: tuple[str, ...],
    namespace: str | None,
    limit: int,
    follow: bool,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """What happened in the registry: packs published, validated, curated..., pointers moved, nodes up or
    down, keys and policies changed (and your own pins' status). Oldest first; --follow streams."""
    from registry.client_events import events_page
    from registry.client_events import follow as follow_stream

    wanted = [t for raw in types for t in raw.split(",") if t]
    with errors(with_request=True), connect(registry, token) as client:
        if not follow:
            page = events_page(client, after=after, types=wanted, namespace=namespace, limit=limit)
            for e in page["items"]:
                click.echo(json.dumps(e) if as_json else _line(e))
            if not as_json and not page["items"]:
                click.echo("no events", err=True)
            return
        try:
            for e in follow_stream(client, after=after, types=wanted, namespace=namespace):
                click.echo(json.dumps(e) if as_json else _line(e))
        except KeyboardInterrupt:
            pass
