"""The ``modelpack`` command line: one lazy click group; a command's module is imported when it runs.

Each command lives in its own module; this table is the only place that names them. The console
entry point is ``registry.app.main:main``: the composition root adds ``serve`` (which needs the whole
daemon) to a group built here, because nothing under ``registry.cli`` imports ``registry.app``.
Exit codes: 0 success, 1 the operation failed (a sentence says why), 2 usage error;
``gate`` and ``verify`` document their own codes.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "cid": "registry.cli.cid_cmd:cid",
    "pack": "registry.cli.pack_cmd:pack",
    "demo-pack": "registry.cli.pack_cmd:demo_pack",
    "import": "registry.cli.import_cmd:import_group",
    "keygen": "registry.cli.trust_cmd:keygen",
    "sign": "registry.cli.trust_cmd:sign",
    "verify": "registry.cli.trust_cmd:verify",
    "key": "registry.cli.trust_registry_cmd:key",
    "policy": "registry.cli.trust_registry_cmd:policy",
    "token": "registry.cli.token_cmd:token",
    "publish": "registry.cli.publish_cmd:publish",
    "pull": "registry.cli.publish_cmd:pull",
    "ls": "registry.cli.publish_cmd:ls",
    "show": "registry.cli.publish_cmd:show",
    "pointer": "registry.cli.publish_cmd:pointer",
    "node": "registry.cli.node_cmd:node",
    "status": "registry.cli.node_cmd:status",
    "pin": "registry.cli.pin_cmd:pin",
    "validate": "registry.cli.gate_cmd:validate",
    "gate": "registry.cli.gate_cmd:gate",
    "curate": "registry.cli.gate_cmd:curate",
    "diff": "registry.cli.diff_cmd:diff",
    "events": "registry.cli.events_cmd:events",
    "webhook": "registry.cli.webhook_cmd:webhook",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs; commands added directly come first."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = {name for name in COMMANDS if self._lazy(name) is not None}
        return sorted(lazy | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.commands.get(cmd_name) or self._lazy(cmd_name)

    @staticmethod
    def _lazy(cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":", 1)
        if importlib.util.find_spec(module_name) is None:
            return None
        cmd = getattr(importlib.import_module(module_name), attr, None)
        return cmd if isinstance(cmd, click.Command) else None


def build_cli(*extra: click.Command) -> click.Group:
    """The root group: every command in ``COMMANDS``, plus ``extra`` (the composition root's)."""

    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="modelpack")
    def modelpack() -> None:
        """modelpack: a content-addressed model registry and pinning daemon."""

    for cmd in extra:
        modelpack.add_command(cmd)
    return modelpack
