"""``modelpack import``: turn checkpoints from elsewhere into ModelPack folders (``import hf DIR OUT``).

The group loads each subcommand lazily from ``SUBCOMMANDS`` (adding an importer is one line there).
model_core is imported inside the commands, so ``--help`` stays fast. This module is the composition root
that hands the importer its file hashing: CIDv1 with raw leaves (``ipfs add --cid-version 1``) and sha256
in one pass over each file, from the pinner's UnixFS code, with a progress bar on large files.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import click

from registry.errors import RegistryError
from registry.names import parse_model_name

if TYPE_CHECKING:
    from model_core.importers.hf import FileDigest

# subcommand name -> "module:attribute"
SUBCOMMANDS: dict[str, str] = {
    "hf": "registry.cli.import_cmd:hf",
    "gguf": "registry.cli.import_gguf_cmd:gguf",
}
PROGRESS_MIN_BYTES = 64 * 1024 * 1024


class _LazyImporters(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in SUBCOMMANDS if self.get_command(ctx, n) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":", 1)
        if importlib.util.find_spec(module_name) is None:
            return None
        cmd = getattr(importlib.import_module(module_name), attr, None)
        return cmd if isinstance(cmd, click.Command) else None


@click.group("import", cls=_LazyImporters)
def import_group() -> None:
    """Import a checkpoint (a Hugging Face folder, a GGUF file) as a ModelPack folder."""


class _CountingReader:
    """A file whose ``readinto`` advances a progress bar."""

    def __init__(self, f: io.FileIO, bar: Any) -> None:
        self._f, self._bar = f, bar

    def readinto(self, buf: memoryview) -> int:
        n = self._f.readinto(buf)
        if n:
            self._bar.update(n)
        return n or 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._bar.update(len(data))
        return data


def file_digest(path: Path) -> FileDigest:
    """CID (``ipfs add --cid-version 1``), sha256 and size of ``path`` in one pass."""
    from model_core.importers.hf import FileDigest
    from pinner.unixfs import UnixfsParams, hash_file

    params = UnixfsParams(cid_version=1, raw_leaves=True)
    size = path.stat().st_size
    if size < PROGRESS_MIN_BYTES:
        d = hash_file(path, params)
    else:
        bar: Any = click.progressbar(length=size, label=f"hashing {path.name}", file=sys.stderr)
        with path.open("rb", buffering=0) as f, bar:
            d = hash_file(cast(BinaryIO, _CountingReader(f, bar)), params)
    return FileDigest(cid=str(d.cid), sha256="sha256:" + d.sha256_hex, size=d.size)


def check_common(name: str, version: str | None) -> None:
    """The options every importer shares: a valid NAMESPACE/MODEL and a bounded version."""
    try:
        parse_model_name(name)
    except RegistryError as e:
        raise click.BadParameter(e.message, param_hint="--name") from None
    if version is not None and not 0 < len(version) <= 128:
        raise click.BadParameter("must be 1 to 128 characters", param_hint="--version")


EVALUATION_MAX_BYTES = 1024 * 1024


def read_evaluation(path: Path | None) -> dict[str, Any] | None:
    """The JSON object in ``--evaluation FILE`` (its rules are checked with the manifest), or None."""
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            raw = f.read(EVALUATION_MAX_BYTES + 1)
    except OSError as e:
        raise click.BadParameter(f"{path}: {e.strerror or e}", param_hint="--evaluation") from None
    if len(raw) > EVALUATION_MAX_BYTES:
        raise click.BadParameter(
            f"{path} is larger than {EVALUATION_MAX_BYTES} bytes", param_hint="--evaluation"
        )
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise click.BadParameter(f"{path} is not JSON: {e}", param_hint="--evaluation") from None
    if not isinstance(doc, dict):
        raise click.BadParameter(
            f"{path} must hold a JSON object (the manifest's evaluation block)", param_hint="--evaluation"
        )
    return doc


def run_importer(out: Path, call: Callable[[Callable[[str], None]], Path]) -> None:
    """Run an importer with stderr logging; its refusals become one sentence and exit 1."""
    from model_core.errors import ModelCoreError

    def log(message: str) -> None:
        click.echo(message, err=True)

    try:
        manifest = call(log)
    except ModelCoreError as e:
        raise click.ClickException(e.message) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out}: {e.strerror or e}") from None
    click.echo(f"wrote {manifest}")


def version_option(default_help: str) -> Callable[[Any], Any]:
    return click.option(
        "--version", "version", default=None, help=f"model_version for the manifest ({default_help})."
    )


def evaluation_option() -> Callable[[Any], Any]:
    return click.option(
        "--evaluation",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="JSON file with the manifest's evaluation block (reference prompts, a perplexity ceiling).",
    )


@import_group.command("hf")
@click.argument("src", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", required=True, help="NAMESPACE/MODEL the pack is published as.")
@version_option("default: hf- and a hash of the files, stable per snapshot")
@evaluation_option()
def hf(src: Path, out: Path, name: str, version: str | None, evaluation: Path | None) -> None:
    """Turn the Hugging Face snapshot folder SRC (Llama or Mistral, safetensors) into a pack folder OUT.

    The pack's files are SRC's own (hard links, or copies across file systems) plus manifest.json.
    OUT must not exist or be empty; on a refusal the command exits 1 with one sentence and OUT is untouched.
    """
    check_common(name, version)
    block = read_evaluation(evaluation)
    from model_core.importers.hf import import_hf

    run_importer(
        out,
        lambda log: import_hf(
            src, out, name=name, version=version, digest_of=file_digest, log=log, evaluation=block
        ),
    )
