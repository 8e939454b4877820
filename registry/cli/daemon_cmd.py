"""``modelpack serve`` and ``modelpack migrate``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

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
    f = click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML config file.")(f)
    f = click.option("--database-url", help="sqlite+aiosqlite:///PATH or postgresql+asyncpg://...")(f)
    f = click.option("--data-dir", type=click.Path(path_type=Path), help="Where the index and blocks live.")(
        f
    )
    return f


def load(
    config_file: Path | None, data_dir: Path | None, database_url: str | None, listen: str | None = None
) -> Any:
    from registry.settings import load_settings

    try:
        return load_settings(config_file, **_overrides(data_dir, database_url, listen))
    except RegistryError as e:
        raise click.ClickException(e.message) from None


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
        _migrate(settings)

    def ready(url: str) -> None:
        click.echo(
            f"modelpack listening on {url}  (database: {_safe_url(settings.database_url)}, "
            f"data dir: {settings.storage.data_dir})",
            err=True,
        )

    try:
        asyncio.run(run(settings, ready=ready))
    except RegistryError as e:
        raise click.ClickException(e.message) from None
    except KeyboardInterrupt:  # pragma: no cover
        pass


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _migrate(settings: Any) -> str:
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
    rev = _migrate(settings)
    click.echo(f"database {_safe_url(settings.database_url)} is at migration {rev}")
