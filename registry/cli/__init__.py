"""The ``modelpack`` command line: one lazy click group; a command's module is imported when it runs.

Each command lives in its own module; this table is the only place that names them, with the short
help ``modelpack --help`` shows, so that listing the commands imports none of them (a test keeps the
table equal to the commands' own help). The console entry point is ``registry.app.main:main``: the
composition root adds ``serve`` (which needs the whole daemon) to a group built here, because nothing
under ``registry.cli`` imports ``registry.app``. Import nothing heavy here: every command pays for it.
Exit codes: 0 success, 1 the operation failed (a sentence says why), 2 usage error;
``gate`` and ``verify`` document their own codes.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from typing import NamedTuple

import click


class Lazy(NamedTuple):
    """A command the group imports only when it runs."""

    target: str
    """``module:attribute`` of the click command."""
    help: str
    """Its short help as ``--help`` lists it: the command's ``get_short_help_str`` with no length limit."""


COMMANDS: dict[str, Lazy] = {
    "cid": Lazy(
        "registry.cli.cid_cmd:cid",
        "Print the UnixFS CID of FILE (a file, a folder, or - for stdin) without storing anything.",
    ),
    "pack": Lazy(
        "registry.cli.pack_cmd:pack",
        "Turn STATE_FILE (.safetensors, or a torch state dict loaded with weights_only) into a pack in "
        "OUT_DIR.",
    ),
    "demo-pack": Lazy(
        "registry.cli.pack_cmd:demo_pack",
        "Write a random-weight pack to OUT_DIR for trying the system (nothing is downloaded).",
    ),
    "import": Lazy(
        "registry.cli.import_cmd:import_group",
        "Import a checkpoint (a Hugging Face folder, a GGUF file) as a ModelPack folder.",
    ),
    "keygen": Lazy(
        "registry.cli.trust_cmd:keygen",
        "Generate an Ed25519 signing key: OUT (PKCS#8 PEM, mode 0600) and OUT.pub (public PEM).",
    ),
    "sign": Lazy(
        "registry.cli.trust_cmd:sign",
        "Sign DIR/manifest.json with an Ed25519 key (RFC 8785 bytes, signature fields removed).",
    ),
    "verify": Lazy(
        "registry.cli.trust_cmd:verify",
        "Verify a pack: TARGET is a pack directory (offline) or, against the registry, NS/MODEL@CHANNEL, "
        "an IPNS name (k51...",
    ),
    "key": Lazy(
        "registry.cli.trust_registry_cmd:key", "Signing keys in the registry: register, list, revoke."
    ),
    "policy": Lazy(
        "registry.cli.trust_registry_cmd:policy",
        "A namespace's trust policy: which keys or publishers it trusts, how many signatures curation needs.",
    ),
    "token": Lazy(
        "registry.cli.token_cmd:token",
        "API tokens: create (local database, bootstraps the first admin), ls and revoke (registry API).",
    ),
    "publish": Lazy(
        "registry.cli.publish_cmd:publish",
        "Verify DIR locally, upload the shards the registry lacks, then publish its manifest; prints the "
        "pack CID.",
    ),
    "pull": Lazy(
        "registry.cli.publish_cmd:pull",
        "Download NS/MODEL[@TAG] or a pack CID into DEST, verifying every byte (CID and sha256).",
    ),
    "ls": Lazy("registry.cli.publish_cmd:ls", "List models (of namespace NS), or the versions of NS/MODEL."),
    "show": Lazy(
        "registry.cli.publish_cmd:show",
        "Show a pack (NS/MODEL[@TAG] or CID): state, shards, signatures, pointers.",
    ),
    "pointer": Lazy("registry.cli.publish_cmd:pointer", "Read and move pointers (NS/MODEL@TAG -> pack CID)."),
    "node": Lazy("registry.cli.node_cmd:node", "Register the IPFS nodes packs are replicated to."),
    "status": Lazy(
        "registry.cli.node_cmd:status", "Replica matrix of a pack: REF is NS/MODEL@TAG or a pack CID."
    ),
    "pin": Lazy(
        "registry.cli.pin_cmd:pin",
        "Pin CIDs through a Pinning Service API: this registry's (default) or any other.",
    ),
    "validate": Lazy(
        "registry.cli.gate_cmd:validate",
        "Ask the registry to validate TARGET (NS/MODEL@TAG | CID) now; needs a publish or admin token.",
    ),
    "gate": Lazy(
        "registry.cli.gate_cmd:gate",
        "Gate a release: TARGET is a pack folder (local, no registry) or NS/MODEL@TAG | CID (registry).",
    ),
    "curate": Lazy(
        "registry.cli.gate_cmd:curate",
        "Admin: point NS/MODEL@curated at TARGET (it must pass the curation rule), or --undo it.",
    ),
    "diff": Lazy(
        "registry.cli.diff_cmd:diff",
        "Compare the behavioural fingerprints of packs A and B (CIDs or NS/MODEL[@TAG]): top-1 agreement "
        "and KL(A || B) on the fixed probe inputs.",
    ),
    "events": Lazy(
        "registry.cli.events_cmd:events",
        "What happened in the registry: packs published, validated, curated..., pointers moved, nodes up "
        "or down, keys and policies changed (and your own pins' status).",
    ),
    "webhook": Lazy(
        "registry.cli.webhook_cmd:webhook",
        "Webhook endpoints of a namespace: signed deliveries of its events (Standard Webhooks).",
    ),
}


def load_command(target: str) -> click.Command | None:
    """The click command at ``module:attribute``, importing its module; None when there is none."""
    module_name, attr = target.split(":", 1)
    if importlib.util.find_spec(module_name) is None:
        return None
    cmd = getattr(importlib.import_module(module_name), attr, None)
    return cmd if isinstance(cmd, click.Command) else None


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs; commands added directly come first.

    ``--help`` lists the lazy commands with the table's help, importing none of them.
    """

    def __init__(self, *args: object, lazy: Mapping[str, Lazy] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy: dict[str, Lazy] = dict(COMMANDS if lazy is None else lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.lazy) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = self.commands.get(cmd_name)
        if cmd is None and cmd_name in self.lazy:
            cmd = load_command(self.lazy[cmd_name].target)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own layout; a command not loaded shows the table's help (shortened as click shortens
        a command's) instead of being imported."""
        shown = [(n, self.commands.get(n)) for n in self.list_commands(ctx)]
        shown = [(n, cmd) for n, cmd in shown if cmd is None or not cmd.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(n) for n, _cmd in shown)
        rows = []
        for n, cmd in shown:
            shortener = cmd or click.Command(n, help=self.lazy[n].help)
            rows.append((n, shortener.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def build_cli(*extra: click.Command, lazy: Mapping[str, Lazy] | None = None) -> click.Group:
    """The root group: every command in ``COMMANDS``, plus ``extra`` and ``lazy`` (the composition
    root's; an entry of ``lazy`` replaces the one of the same name in ``COMMANDS``)."""

    @click.group(
        cls=LazyGroup,
        lazy={**COMMANDS, **(lazy or {})},
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    @click.version_option(package_name="modelpack")
    def modelpack() -> None:
        """modelpack: a content-addressed model registry and pinning daemon."""

    for cmd in extra:
        modelpack.add_command(cmd)
    return modelpack
