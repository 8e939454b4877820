"""The commands that open the index themselves: ``modelpack migrate`` and ``modelpack token create``
(which bootstraps the first admin before any token exists), and the settings options they and ``serve``
share. They live in the composition root because they read Settings and choose the database classes;
``registry.app.main`` adds them to the CLI.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from registry.cli.output import emit, errors, say
from registry.errors import RegistryError


def _overrides(data_dir: Path | None, database_url: str | None, listen: str | None) -> dict[str, Any]:
    ov: dict[str, Any] = {}
    if data_dir is not None:
        ov["storage"] = {"data_dir": str(data_dir.resolve())}
    if database_url is not None:
        ov["database"] = {"url": database_url}
    if listen is not None:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint="--listen")
        ov["server"] = {"host": host.strip("[]"), "port": int(port)}
    return ov


def settings_options(f: Any) -> Any:
    """``--config``, ``--database-url`` and ``--data-dir``: where the settings and the index are."""
    f = click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML config file.")(f)
    f = click.option("--database-url", help="sqlite+aiosqlite:///PATH or postgresql+asyncpg://...")(f)
    f = click.option("--data-dir", type=click.Path(path_type=Path), help="Where the index and blocks live.")(
        f
    )
    return f


def load(
    config_file: Path | None, data_dir: Path | None, database_url: str | None, listen: str | None = None
) -> Any:
    """The settings, with these flags over the environment and the file; a bad one is one sentence."""
    from registry.settings import load_settings

    try:
        return load_settings(config_file, **_overrides(data_dir, database_url, listen))
    except RegistryError as e:
        raise click.ClickException(e.message) from None


def safe_url(url: str) -> str:
    """The database URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def migrate_db(settings: Any) -> str:
    """Create or upgrade the index schema; the revision it is at afterwards."""
    from registry.db.engine import create_engine, ping
    from registry.db.migrate import current_revision, upgrade

    async def go() -> str:
        engine = create_engine(settings.database_url, connect_timeout_s=settings.database.connect_timeout_s)
        try:
            await ping(engine)
            await upgrade(engine)
            return await current_revision(engine) or "?"
        finally:
            await engine.dispose()

    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(go())
    except RegistryError as e:
        raise click.ClickException(e.message) from None
    except Exception as e:
        if "Can't locate revision" in str(e):
            raise click.ClickException(
                f"the database is at a migration this version of modelpack does not know ({e}); upgrade modelpack"
            ) from None
        raise


@click.command()
@settings_options
def migrate(config_file: Path | None, data_dir: Path | None, database_url: str | None) -> None:
    """Create or upgrade the index schema to this version."""
    settings = load(config_file, data_dir, database_url)
    rev = migrate_db(settings)
    click.echo(f"database {safe_url(settings.database_url)} is at migration {rev}")


@click.command("create")
@settings_options
@click.option("--publisher", required=True, help="Publisher name (created if new).")
@click.option(
    "--namespace", "namespaces", multiple=True, help="Namespace the token may publish in (repeatable)."
)
@click.option(
    "--scope",
    "scopes",
    type=click.Choice(["read", "publish", "admin", "pin"]),
    multiple=True,
    default=("publish",),
    show_default=True,
    help="Repeatable. read: reads when server.read_requires_token is on; publish: upload, publish, move"
    " pointers, keys in member namespaces; admin: all of that in its namespaces (every one without"
    " --namespace: a global admin) plus curation, policies, tokens; pin: the Pinning Service API only.",
)
@click.option("--description", help="What the token is for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def token_create(
    config_file: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    publisher: str,
    namespaces: tuple[str, ...],
    scopes: tuple[str, ...],
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
                publisher, namespaces=namespaces or None, scopes=scopes, description=description
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
        "namespaces": list(issued.namespaces) if issued.namespaces is not None else None,
    }
    note = (
        f"token {issued.id} for {issued.publisher} ({', '.join(issued.scopes)}; namespaces: "
        f"{', '.join(issued.namespaces or ()) or 'all of the publisher'}); it is not shown again"
    )
    emit(as_json, data, lambda: say(issued.token, note))
