"""``modelpack import gguf FILE OUT --name NS/MODEL``: a llama GGUF file as an HF-layout ModelPack folder.

model_core (torch, safetensors, gguf, tokenizers) is imported inside the command, so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli.import_cmd import file_digest
from registry.errors import RegistryError
from registry.names import parse_model_name

DTYPES = ("float16", "bfloat16", "float32")  # model_core.importers.gguf_config.DTYPES


@click.command("gguf")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", required=True, help="NAMESPACE/MODEL the pack is published as.")
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float16",
    show_default=True,
    help="Floating-point type of the dequantized weights.",
)
@click.option(
    "--version",
    "version",
    default=None,
    help="model_version for the manifest (default: hf- and a hash of the files, as import hf).",
)
def gguf(file: Path, out: Path, name: str, dtype: str, version: str | None) -> None:
    """Dequantize the llama GGUF FILE and write a Hugging Face layout pack folder at OUT.

    OUT must not exist or be empty; on any refusal (another architecture, a truncated file, missing
    metadata, an unsupported tokenizer) the command exits 1 with one sentence and leaves OUT untouched.
    """
    try:
        parse_model_name(name)
    except RegistryError as e:
        raise click.BadParameter(e.message, param_hint="--name") from None
    if version is not None and not 0 < len(version) <= 128:
        raise click.BadParameter("must be 1 to 128 characters", param_hint="--version")
    from model_core.errors import ModelCoreError
    from model_core.importers.gguf import import_gguf

    def log(message: str) -> None:
        click.echo(message, err=True)

    try:
        manifest = import_gguf(
            file, out, name=name, digest_of=file_digest, dtype=dtype, version=version, progress=True, log=log
        )
    except ModelCoreError as e:
        raise click.ClickException(e.message) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or out}: {e.strerror or e}") from None
    click.echo(f"wrote {manifest}")
