"""``modelpack import gguf``: a ``llama`` GGUF file -> a Hugging Face Llama folder -> a ModelPack.

:func:`gguf_to_hf` reads the file with the ``gguf`` package, checks every piece of metadata it needs
before any heavy work, then dequantizes each tensor, undoes GGUF's rotary row order, and writes
safetensors (sharded past ``max_shard_bytes``), ``config.json``, ``generation_config.json`` and the
tokenizer files into a staging folder beside the output, renamed into place only when complete.
:func:`import_gguf` turns that folder into a pack with :func:`model_core.importers.hf.import_hf`.
A ``README.md`` model card carries ``general.license`` in its front matter, where ``import_hf`` reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from model_core.importers.gguf_config import DTYPES, check_architecture, hf_config, read_shape
from model_core.importers.gguf_read import GGUFFile, GGUFRefused, open_gguf
from model_core.importers.gguf_tensors import (
    TORCH_DTYPES,
    TensorPlan,
    convert,
    is_tied,
    plan_tensors,
    shard_groups,
)
from model_core.importers.gguf_tokenizer import build_tokenizer
from model_core.importers.hf import DigestFn, LogFn, import_hf

GENERATOR = "modelpack import gguf"
DEFAULT_DTYPE = "float16"
DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
_LICENSE_ID = re.compile(r"[A-Za-z0-9.+-]{1,64}")  # an SPDX-like id, safe in YAML front matter

__all__ = ["DEFAULT_DTYPE", "DTYPES", "GGUFRefused", "gguf_to_hf", "import_gguf"]


class _Progress:
    """Progress bars on stderr when asked for (rich), nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(console=Console(stderr=True), transient=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[_Progress]:
        if self._progress is None:
            yield self
            return
        with self._progress:
            yield self

    def task(self, description: str, total: float | None) -> Any:
        return None if self._progress is None else self._progress.add_task(description, total=total)

    def advance(self, task: Any, amount: float) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, amount)

    def done(self, task: Any) -> None:
        if self._progress is not None and task is not None:
            total = self._progress.tasks[task].total
            self._progress.update(task, total=total or 1, completed=total or 1)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GGUFRefused(out, "output folder", "already exists and is not empty")


def _staging(out: Path, what: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=f".{what}", dir=out.parent))


def _default_permissions(folder: Path) -> None:
    """mkdtemp's 0700 (and safetensors' 0600) -> the usual 0755 folder of 0644 files."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def _shard_names(n: int) -> list[str]:
    if n == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]


def _write_weights(
    f: GGUFFile, plans: list[TensorPlan], dtype: str, folder: Path, max_shard_bytes: int, bars: _Progress
) -> None:
    torch_dtype = TORCH_DTYPES[dtype]
    groups = shard_groups(plans, torch_dtype, max_shard_bytes)
    names = _shard_names(len(groups))
    total = sum(p.nbytes(torch_dtype) for p in plans)
    task = bars.task(f"dequantizing {len(plans)} tensors to {dtype}", total)
    weight_map: dict[str, str] = {}
    for group, name in zip(groups, names, strict=True):
        tensors = {}
        for plan in group:
            tensors[plan.hf_name] = convert(f, plan, torch_dtype)
            weight_map[plan.hf_name] = name
            bars.advance(task, plan.nbytes(torch_dtype))
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
    if len(names) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        _write_json(folder / "model.safetensors.index.json", index)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _model_card(f: GGUFFile, dtype: str) -> str:
    """A short model card; ``general.license`` goes in the YAML front matter (``license:``)."""
    title = " ".join(f.get_str("general.name", f.path.stem).split())[:200] or f.path.stem
    license_id = f.get_str("general.license", "")
    front = f"---\nlicense: {license_id}\n---\n\n" if _LICENSE_ID.fullmatch(license_id) else ""
    return (
        f"{front}# {title}\n\nConverted by `modelpack import gguf` from `{f.path.name}`: every tensor "
        f"dequantized to {dtype}, rotary rows of q_proj/k_proj restored to the Hugging Face order.\n"
    )


def gguf_to_hf(
    file: Path,
    out_dir: Path,
    dtype: str = DEFAULT_DTYPE,
    *,
    progress: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Write the HF Llama folder of the GGUF ``file`` at ``out_dir`` (absent or empty); returns ``out_dir``.

    Raises :class:`GGUFRefused` (one sentence naming the file and the field) for another architecture, a
    truncated file, missing metadata or an unsupported tokenizer; ``out_dir`` is then left as it was.
    """
    file, out_dir = Path(file), Path(out_dir)
    if dtype not in DTYPES:
        raise GGUFRefused(file, "dtype", f"{dtype!r} is not one of {', '.join(DTYPES)}")
    _check_out(out_dir)
    bars = _Progress(progress)
    with bars.running():
        reading = bars.task(f"reading {file.name}", None)
        f = open_gguf(file)
        bars.done(reading)
        check_architecture(f)
        tokenizer = build_tokenizer(f)
        shape = read_shape(f, tokenizer.vocab_size)
        config = hf_config(f, shape, tied=is_tied(f), dtype=dtype, special_ids=tokenizer.special_ids)
        plans = plan_tensors(f, shape)
        staging = _staging(out_dir, "partial")
        try:
            _write_weights(f, plans, dtype, staging, max_shard_bytes, bars)
            _write_json(staging / "config.json", config)
            generation = {
                k: v for k, v in config.items() if k in ("bos_token_id", "eos_token_id", "pad_token_id")
            }
            _write_json(staging / "generation_config.json", generation)
            tokenizer.write(staging, config["max_position_embeddings"])
            (staging / "README.md").write_text(_model_card(f, dtype), encoding="utf-8")
            _default_permissions(staging)
            os.replace(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return out_dir


def import_gguf(
    file: Path,
    out: Path,
    *,
    name: str,
    digest_of: DigestFn,
    dtype: str = DEFAULT_DTYPE,
    version: str | None = None,
    progress: bool = False,
    log: LogFn | None = None,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """The GGUF ``file`` as a ModelPack folder at ``out``; returns its manifest path.

    The file is converted to a temporary HF folder beside ``out``, which :func:`import_hf` then turns
    into the pack (hard links, so no second copy of the weights); the temporary folder is removed.
    """
    out = Path(out)
    _check_out(out)
    staging = _staging(out, "gguf-hf")
    try:
        hf_dir = gguf_to_hf(file, staging / "hf", dtype, progress=progress)
        return import_hf(
            hf_dir,
            out,
            name=name,
            version=version,
            digest_of=digest_of,
            log=log,
            evaluation=evaluation,
            generator=GENERATOR,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
