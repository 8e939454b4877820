"""The ``modelpack`` console entry point: the CLI's commands plus those of the composition root.

The CLI (``registry.cli``) sits below the composition root and never imports it; this module adds the
commands that read Settings and build services: ``serve`` (the whole daemon, ``registry.app.commands``),
``migrate`` and ``token create`` (``registry.app.admin``). Every command is named lazily: a process
imports only the command it runs (``modelpack cid`` starts without the daemon, the HTTP client or
the database), and ``modelpack --help`` imports none of them.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from registry.cli import COMMANDS, Lazy, build_cli
from registry.errors import RegistryError

ROOT_COMMANDS: dict[str, Lazy] = {
    "serve": Lazy("registry.app.commands:serve", "Run the daemon: API, gateway and background services."),
    "migrate": Lazy("registry.app.admin:migrate", "Create or upgrade the index schema to this version."),
    # The CLI's group with `token create` added: `ls` and `revoke` go through the API, `create` opens the index.
    "token": Lazy("registry.app.commands:token", COMMANDS["token"].help),
}

cli = build_cli(lazy=ROOT_COMMANDS)


def main(argv: list[str] | None = None) -> Any:
    """Console entry point; turns package errors into one sentence and exit code 1."""
    try:
        return cli.main(args=argv, prog_name="modelpack", standalone_mode=True)
    except RegistryError as e:  # pragma: no cover - commands normally report through click
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
