"""The composition root's commands, imported only when one of them runs (``registry.app.main`` names
them lazily): ``serve`` (the whole daemon) and ``token`` (the CLI's group plus ``token create``, which
opens the index). ``migrate`` is ``registry.app.admin``'s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from registry.app.admin import load, migrate_db, safe_url, settings_options, token_create
from registry.cli.token_cmd import token
from registry.errors import RegistryError

__all__ = ["serve", "token"]

# `token ls|revoke` go through the API (registry.cli); `token create` opens the index, so it is the root's.
token.add_command(token_create)


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
