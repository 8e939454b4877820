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
import sys
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


@import_group.command("hf")
@click.argument("src", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", required=True, help="NAMESPACE/MODEL the pack is published as.")
@click.option(
    "--version",
    "version",
    default=None,
    help="model_version for the manifest (default: hf- and a hash of the files, stable per snapshot).",
)
def hf(src: Path, out: Path, name: str, version: str | None) -> None:
    """Turn the Hugging Face snapshot folder SRC (Llama or Mistral, safetensors) into a pack folder OUT.

    The pack's files are SRC's own (hard links, or copies across file systems) plus manifest.json.
    OUT must not exist or be empty; on a refusal the command exits 1 with one sentence and OUT is untouched.
    """
    try:
        parse_model_name(name)
    except RegistryError as e:
        raise click.BadParameter(e.message, param_hint="--name") from None
    if version is not None and not 0 < len(version) <= 128:
        raise click.BadParameter("must be 1 to 128 characters", param_hint="--version")
    from model_core.errors import ModelCoreError
    from model_core.importers.hf import import_hf

    def log(message: str) -> None:
        click.echo(message, err=True)

    try:
        manifest = import_hf(src, out, name=name, version=version, digest_of=file_digest, log=log)
    except ModelCoreError as e:
        raise click.ClickException(e.message) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out}: {e.strerror or e}") from None
    click.echo(f"wrote {manifest}")
