"""``modelpack token create|ls|revoke``: API tokens.

``create`` works against the local database (it bootstraps the first admin, before any token exists) and
is added by the composition root (``registry.app.admin``); ``ls`` and ``revoke`` go through the registry API (``MODELPACK_REGISTRY``, ``MODELPACK_TOKEN``): a
publisher sees and revokes its own tokens, an admin every token. Exit codes as for ``publish``.
"""

from __future__ import annotations

import click
from rich.console import Console

from registry.cli.options import connect, remote_options
from registry.cli.output import emit, errors, table

remote = remote_options()


@click.group()
def token() -> None:
    """API tokens: create (local database, bootstraps the first admin), ls and revoke (registry API)."""


@token.command("ls")
@remote
def token_ls(registry: str, token: str | None, as_json: bool) -> None:
    """List the caller's tokens (every token for an admin); secrets are never shown."""
    with errors(), connect(registry, token) as client:
        items = client.tokens()
    grid = table("ID", "PREFIX", "PUBLISHER", "SCOPES", "NAMESPACES", "LAST USED", "REVOKED", "DESCRIPTION")
    for t in items:
        grid.add_row(
            str(t["id"]),
            t["prefix"],
            t["publisher"],
            ",".join(t["scopes"]),
            (",".join(t["namespaces"]) or "(none)") if t["namespaces"] is not None else "(all)",
            t.get("last_used_at") or "-",
            t.get("revoked_at") or "-",
            t.get("description") or "",
        )
    emit(as_json, items, lambda: Console().print(grid))


@token.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1), metavar="ID")
@remote
def token_revoke(token_id: int, registry: str, token: str | None, as_json: bool) -> None:
    """Revoke token ID (see "token ls"): it stops working at once."""
    with errors(), connect(registry, token) as client:
        info = client.revoke_token(token_id)
    emit(
        as_json,
        info,
        lambda: click.echo(f"token {info['id']} ({info['prefix']}...) of {info['publisher']} revoked"),
    )
