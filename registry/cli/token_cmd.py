"""``modelpack token create|ls|revoke``: API tokens.

``create`` works against the local database (it bootstraps the first admin, before any token exists);
``ls`` and ``revoke`` go through the registry API (``MODELPACK_REGISTRY``, ``MODELPACK_TOKEN``): a
publisher sees and revokes its own tokens, an admin every token. Exit codes as for ``publish``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from registry.cli.migrate_cmd import load, migrate_db, settings_options
from registry.cli.options import connect, remote_options
from registry.cli.output import emit, errors, say, table

remote = remote_options()


@click.group()
def token() -> None:
    """API tokens: create (local database, bootstraps the first admin), ls and revoke (registry API)."""


@token.command("create")
@settings_options
@click.option("--publisher", required=True, help="Publisher name (created if new).")
@click.option(
    "--namespace", "namespaces", multiple=True, help="Namespace the token may publish in (repeatable)."
)
@click.option("--scope", type=click.Choice(["publish", "admin"]), default="publish", show_default=True)
@click.option("--description", help="What the token is for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def token_create(
    config_file: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    publisher: str,
    namespaces: tuple[str, ...],
    scope: str,
    description: str | None,
    as_json: bool,
) -> None:
    """Create a token and print it once (it is stored only as its sha256)."""
    from registry.accounts.auth import AuthService
    from registry.db.engine import create_engine, session_factory

    settings = load(config_file, data_dir, database_url)
    migrate_db(settings)

    async def go() -> Any:
        engine = create_engine(settings.database_url)
        try:
            return await AuthService(session_factory(engine)).create_token(
                publisher, namespaces=namespaces or None, scopes=(scope,), description=description
            )
        finally:
            await engine.dispose()

    with errors():
        issued = asyncio.run(go())
    data = {
        "id": issued.id,
        "token": issued.token,
        "publisher": issued.publisher,
        "scopes": list(issued.scopes),
        "namespaces": list(issued.namespaces) if issued.namespaces else None,
    }
    note = (
        f"token {issued.id} for {issued.publisher} ({scope}; namespaces: "
        f"{', '.join(issued.namespaces or ()) or 'all of the publisher'}); it is not shown again"
    )
    emit(as_json, data, lambda: say(issued.token, note))


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
            ",".join(t["namespaces"]) if t["namespaces"] is not None else "(all)",
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
