"""``modelpack import gguf FILE OUT --name NS/MODEL``: a llama GGUF file as an HF-layout ModelPack folder.

model_core (torch, safetensors, gguf, tokenizers) is imported inside the command, so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli.import_cmd import (
    check_common,
    evaluation_option,
    file_digest,
    read_evaluation,
    run_importer,
    version_option,
)

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
@version_option("default: hf- and a hash of the files, as import hf")
@evaluation_option()
def gguf(file: Path, out: Path, name: str, dtype: str, version: str | None, evaluation: Path | None) -> None:
    """Dequantize the llama GGUF FILE and write a Hugging Face layout pack folder at OUT.

    OUT must not exist or be empty; on any refusal (another architecture, a truncated file, missing
    metadata, an unsupported tokenizer) the command exits 1 with one sentence and leaves OUT untouched.
    """
    check_common(name, version)
    block = read_evaluation(evaluation)
    from model_core.importers.gguf import import_gguf

    run_importer(
        out,
        lambda log: import_gguf(
            file,
            out,
            name=name,
            digest_of=file_digest,
            dtype=dtype,
            version=version,
            progress=True,
            log=log,
            evaluation=block,
        ),
    )
