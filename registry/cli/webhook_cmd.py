"""``modelpack webhook add|ls|rm|test|deliveries|redeliver|rotate|enable``: a namespace's webhook endpoints, for
its admins (``--token`` with the admin scope for the namespace). ``add`` and ``rotate`` print the secret, the
only time it is shown."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from registry.cli.options import connect, remote_options
from registry.cli.output import emit, errors, print_json, table

remote = remote_options()


def _hook_line(h: dict[str, Any]) -> str:
    state = "enabled" if h["enabled"] else f"disabled ({h.get('disabled_reason') or ''})"
    model = f" model={h['model']}" if h.get("model") else ""
    return f"{h['id']} {h['url']} [{','.join(h['events'])}]{model} {state}"


def _secret_note(out: dict[str, Any], what: str) -> None:
    click.echo(out["secret"])
    click.echo(
        f"{what} webhook {out['webhook']['id']} ({out['webhook']['url']}); the secret above is shown only "
        "now: receivers verify the webhook-signature header with it",
        err=True,
    )


@click.group()
def webhook() -> None:
    """Webhook endpoints of a namespace: signed deliveries of its events (Standard Webhooks)."""


@webhook.command("add")
@click.argument("namespace")
@click.argument("url")
@click.option("--event", "events", multiple=True, help="An event type (repeat, or comma-join); default: all.")
@click.option("--model", help="Only events of this model (its name within the namespace).")
@remote
def add(
    namespace: str,
    url: str,
    events: tuple[str, ...],
    model: str | None,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Register URL for NAMESPACE's events; prints the signing secret (once)."""
    from registry import client_webhooks as api

    wanted = [t for raw in events for t in raw.split(",") if t]
    with errors(), connect(registry, token, need_token=True) as c:
        out = api.add(c, namespace, url, wanted, model)
    emit(as_json, out, lambda: _secret_note(out, "added"))


@webhook.command("ls")
@click.argument("namespace")
@remote
def ls(namespace: str, registry: str, token: str | None, as_json: bool) -> None:
    """NAMESPACE's webhook endpoints."""
    from registry import client_webhooks as api

    with errors(), connect(registry, token, need_token=True) as c:
        hooks = api.ls(c, namespace)
    if as_json:
        print_json(hooks)
        return
    if not hooks:
        click.echo(f"namespace {namespace} has no webhooks", err=True)
        return
    grid = table("id", "url", "events", "model", "state", "failures", "created")
    for h in hooks:
        state = "enabled" if h["enabled"] else f"disabled: {h.get('disabled_reason') or ''}"
        grid.add_row(
            str(h["id"]),
            h["url"],
            ",".join(h["events"]),
            h.get("model") or "-",
            state,
            str(h["consecutive_failures"]),
            f"{h['created_at']} by {h['created_by']}",
        )
    Console().print(grid)


@webhook.command("rm")
@click.argument("namespace")
@click.argument("webhook_id", type=click.IntRange(min=1))
@remote
def rm(namespace: str, webhook_id: int, registry: str, token: str | None, as_json: bool) -> None:
    """Remove endpoint WEBHOOK_ID and its delivery log."""
    from registry import client_webhooks as api

    with errors(), connect(registry, token, need_token=True) as c:
        out = api.rm(c, namespace, webhook_id)
    emit(as_json, out, lambda: click.echo(f"removed webhook {out['id']} ({out['url']})"))


@webhook.command("test")
@click.argument("namespace")
@click.argument("webhook_id", type=click.IntRange(min=1))
@remote
def test(namespace: str, webhook_id: int, registry: str, token: str | None, as_json: bool) -> None:
    """Send a signed webhook.test ping now; exit 1 when the receiver did not answer 2xx."""
    from registry import client_webhooks as api

    with errors(), connect(registry, token, need_token=True) as c:
        out = api.test(c, namespace, webhook_id)
    emit(as_json, out, lambda: click.echo(_delivery_line(out)))
    if out["status"] != "delivered":
        raise click.exceptions.Exit(1)


def _delivery_line(d: dict[str, Any]) -> str:
    code = d.get("last_status_code") or "-"
    latency = f"{d['latency_ms']} ms" if d.get("latency_ms") is not None else "-"
    why = f"  {d['error']}" if d.get("error") else ""
    retry = f"  next attempt {d['next_attempt_at']}" if d.get("next_attempt_at") else ""
    return f"{d['id']:>6} {d['type']:<22} {d['status']:<9} HTTP {code} {latency} x{d['attempts']}{why}{retry}"


@webhook.command("deliveries")
@click.argument("namespace")
@click.argument("webhook_id", type=click.IntRange(min=1))
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--before", type=click.IntRange(min=1), help="Only deliveries with a smaller id (older).")
@remote
def deliveries(
    namespace: str,
    webhook_id: int,
    limit: int,
    before: int | None,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """WEBHOOK_ID's delivery log, newest first: status, HTTP code, latency, attempts, why it failed."""
    from registry import client_webhooks as api

    with errors(), connect(registry, token, need_token=True) as c:
        page = api.deliveries(c, namespace, webhook_id, limit=limit, before=before)
    if as_json:
        print_json(page)
        return
    for d in page["items"]:
        click.echo(_delivery_line(d))
    if not page["items"]:
        click.echo("no deliveries", err=True)
    elif page.get("next_before"):
        click.echo(f"older: --before {page['next_before']}", err=True)


@webhook.command("redeliver")
@click.argument("namespace")
@click.argument("webhook_id", type=click.IntRange(min=1))
@click.argument("delivery_id", type=click.IntRange(min=1))
@remote
def redeliver(
    namespace: str, webhook_id: int, delivery_id: int, registry: str, token: str | None, as_json: bool
) -> None:
    """Send delivery DELIVERY_ID's message again (same webhook-id and body)."""
    from registry import client_webhooks as api

    with errors(), connect(registry, token, need_token=True) as c:
        out = api.redeliver(c, namespace, webhook_id, delivery_id)
    emit(as_json, out, lambda: click.echo(f"queued delivery {out['id']} of {out['message_id']}"))


@webhook.command("rotate")
@click.argument("namespace")
@click.argument("webhook_id", type=click.IntRange(min=1))
@remote
def rotate(namespace: str, webhook_id: int, registry: str, token: str | None, as_json: bool) -> None:
    """A new signing secret (printed once); the old one also signs for webhooks.secret_grace_s."""
    from registry import client_webhooks as api

    with errors(), connect(registry, token, need_token=True) as c:
        out = api.rotate(c, namespace, webhook_id)
    emit(as_json, out, lambda: _secret_note(out, "rotated the secret of"))


@webhook.command("enable")
@click.argument("namespace")
@click.argument("webhook_id", type=click.IntRange(min=1))
@click.option("--disable", is_flag=True, help="Disable it instead.")
@remote
def enable(
    namespace: str, webhook_id: int, disable: bool, registry: str, token: str | None, as_json: bool
) -> None:
    """Enable WEBHOOK_ID again (e.g. after failures disabled it): it gets events from now on."""
    from registry import client_webhooks as api

    with errors(), connect(registry, token, need_token=True) as c:
        out = api.set_enabled(c, namespace, webhook_id, not disable)
    emit(as_json, out, lambda: click.echo(_hook_line(out)))
