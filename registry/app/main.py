"""The ``modelpack`` console entry point: the CLI's commands plus those of the composition root.

The CLI (``registry.cli``) sits below the composition root and never imports it; this module adds the
commands that read Settings and build services: ``serve`` (the whole daemon), ``migrate`` and
``token create`` (``registry.app.admin``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from registry.app.admin import load, migrate, migrate_db, safe_url, settings_options, token_create
from registry.cli import build_cli
from registry.cli.token_cmd import token as token_group
from registry.errors import RegistryError


@click.command()
@settings_options
@click.option("--listen", help="HOST:PORT to listen on (default 127.0.0.1:8740).")
@click.option(
    "--migrate/--no-migrate", default=True, show_default=True, help="Apply migrations before starting."
)
def serve(
    config_file: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    listen: str | None,
    migrate: bool,
) -> None:
    """Run the daemon: API, gateway and background services."""
    from registry.app.daemon import configure_logging
    from registry.app.daemon import serve as run

    settings = load(config_file, data_dir, database_url, listen)
    configure_logging()
    if migrate:
        migrate_db(settings)

    def ready(url: str) -> None:
        click.echo(
            f"modelpack listening on {url}  (database: {safe_url(settings.database_url)}, "
            f"data dir: {settings.storage.data_dir})",
            err=True,
        )

    try:
        asyncio.run(run(settings, ready=ready))
    except RegistryError as e:
        raise click.ClickException(e.message) from None
    except KeyboardInterrupt:  # pragma: no cover
        pass


cli = build_cli(serve, migrate)
# `token ls|revoke` go through the API (registry.cli); `token create` opens the index, so it is the root's.
token_group.add_command(token_create)


def main(argv: list[str] | None = None) -> Any:
    """Console entry point; turns package errors into one sentence and exit code 1."""
    try:
        return cli.main(args=argv, prog_name="modelpack", standalone_mode=True)
    except RegistryError as e:  # pragma: no cover - commands normally report through click
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
