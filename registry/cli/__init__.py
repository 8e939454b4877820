"""The ``modelpack`` command line: one lazy click group; a command's module is imported when it runs.

Each command lives in its own module; this table is the only place that names them.
Exit codes: 0 success, 1 the operation failed (a sentence says why), 2 usage error;
``gate`` and ``verify`` document their own codes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "serve": "registry.cli.daemon_cmd:serve",
    "migrate": "registry.cli.daemon_cmd:migrate",
    "cid": "registry.cli.cid_cmd:cid",
    "pack": "registry.cli.pack_cmd:pack",
    "demo-pack": "registry.cli.pack_cmd:demo_pack",
    "keygen": "registry.cli.trust_cmd:keygen",
    "sign": "registry.cli.trust_cmd:sign",
    "verify": "registry.cli.trust_cmd:verify",
    "key": "registry.cli.trust_cmd:key",
    "policy": "registry.cli.trust_cmd:policy",
    "token": "registry.cli.token_cmd:token",
    "publish": "registry.cli.publish_cmd:publish",
    "pull": "registry.cli.publish_cmd:pull",
    "ls": "registry.cli.publish_cmd:ls",
    "show": "registry.cli.publish_cmd:show",
    "pointer": "registry.cli.publish_cmd:pointer",
    "node": "registry.cli.node_cmd:node",
    "status": "registry.cli.node_cmd:status",
    "validate": "registry.cli.gate_cmd:validate",
    "gate": "registry.cli.gate_cmd:gate",
    "curate": "registry.cli.gate_cmd:curate",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self.get_command(ctx, name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":", 1)
        if importlib.util.find_spec(module_name) is None:
            return None
        cmd = getattr(importlib.import_module(module_name), attr, None)
        return cmd if isinstance(cmd, click.Command) else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelpack")
def cli() -> None:
    """modelpack: a content-addressed model registry and pinning daemon."""


def main(argv: list[str] | None = None) -> Any:
    """Console entry point; turns package errors into one sentence and exit code 1."""
    from registry.errors import RegistryError

    try:
        return cli.main(args=argv, prog_name="modelpack", standalone_mode=True)
    except RegistryError as e:  # pragma: no cover - commands normally report through click
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
