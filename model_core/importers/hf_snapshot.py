"""Reading and checking a local Hugging Face snapshot folder before anything is written; torch-free.

A snapshot is ``config.json`` (a Llama/Mistral config the core can express), the weights as
``model.safetensors`` or shards named by ``model.safetensors.index.json``, and other files (tokenizer,
generation config, model card, license). Every tensor is checked against the config from the shard
headers alone (names, shapes, dtypes, coverage, the tied head); tensor data is read only to compare a
tied head with the embedding.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_core.config import ModelConfig
from model_core.errors import ConfigInvalid, ModelCoreError, PackInvalid, bounded, q
from model_core.format.fields import check_shard_filename
from model_core.format.hf_config import model_config_from_hf
from model_core.layouts import HF_LLAMA, check_tensor_table, plan_layout, tie_mismatch
from model_core.shard_header import ShardHeader, TensorInfo, read_header

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOKENIZER = "tokenizer.json"
JSON_MAX_BYTES = 64 * 1024 * 1024  # a tokenizer.json of a 256k vocabulary is ~20 MB
HEADER_MAX_BYTES = 100_000_000
# Weights in formats a pack does not carry; left out of the pack (with a note), never converted here.
OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx", ".safetensors")


class HFImportRefused(ModelCoreError):
    """The folder is not a Hugging Face snapshot this importer can turn into a pack."""

    code = "import_refused"
    http_status = 422


@dataclass(frozen=True)
class Snapshot:
    src: Path
    config: ModelConfig
    hf_config: dict[str, Any]
    ignored_keys: list[str]
    shards: tuple[str, ...]  # weight files, in the order the index (or the single file) names them
    files: tuple[str, ...]  # every other file the pack carries
    skipped: tuple[str, ...]  # what was left out, each with the reason
    dtype: str


def read_snapshot(src: Path) -> Snapshot:
    """Check ``src`` completely (config, weight files, every tensor) and say what a pack of it holds.

    Raises:
        HFImportRefused, ConfigInvalid, PackInvalid: one sentence naming the file and the field or tensor.
    """
    if not src.is_dir():
        raise HFImportRefused(f"{src} is not a folder (expected a Hugging Face snapshot folder)")
    if not (src / CONFIG).is_file():
        raise HFImportRefused(f"{src} has no {CONFIG}; a Hugging Face snapshot folder needs one")
    data = read_json(src / CONFIG)
    cfg, ignored = model_config_from_hf(data, CONFIG)
    shards, index_map = _weight_files(src)
    table: dict[str, tuple[str, tuple[int, ...]]] = {}
    origin: dict[str, str] = {}
    infos: dict[str, tuple[ShardHeader, TensorInfo]] = {}
    for shard in shards:
        path = src / shard
        header = read_header(path, path.stat().st_size, shard, HEADER_MAX_BYTES)
        for t in header.tensors:
            if t.name in origin:
                raise PackInvalid(
                    f"tensor {q(t.name)} is in two weight files: {q(origin[t.name])} and {q(shard)}",
                    key=t.name,
                )
            table[t.name], origin[t.name], infos[t.name] = (t.dtype, t.shape), shard, (header, t)
    if index_map is not None:
        _check_index(index_map, origin)
    plan = plan_layout(cfg, HF_LLAMA)
    dtype = check_tensor_table(plan, table, origin, what=CONFIG)
    tied_pair = plan.tied and plan.head in infos and plan.embed in infos
    if tied_pair and not _same_bytes(src, origin, infos, plan.embed, plan.head):
        raise PackInvalid(tie_mismatch(plan), key=plan.head)
    files, skipped = _other_files(src, set(shards))
    if TOKENIZER in files:
        _check_tokenizer(src / TOKENIZER)
    return Snapshot(src, cfg, data, ignored, tuple(shards), tuple(files), tuple(skipped), dtype)


def read_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > JSON_MAX_BYTES:
        raise HFImportRefused(f"{path.name} is {size} bytes, more than the limit of {JSON_MAX_BYTES}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise HFImportRefused(f"{path.name} is not valid JSON: {bounded(e)}") from None


def _weight_files(src: Path) -> tuple[list[str], dict[str, str] | None]:
    """The weight files (and the index's tensor -> file map when sharded)."""
    if (src / INDEX).is_file():
        index = read_json(src / INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise HFImportRefused(f"{INDEX} field weight_map must be a non-empty object of tensor -> file")
        shards: list[str] = []
        for tensor, shard in weight_map.items():
            if not isinstance(shard, str):
                raise HFImportRefused(
                    f"{INDEX} field weight_map[{q(tensor)}] must be a file name, not {q(shard)}"
                )
            _safe_name(shard, f"{INDEX} field weight_map[{q(tensor)}]")
            if shard not in shards:
                if not (src / shard).is_file():
                    raise HFImportRefused(
                        f"{INDEX} field weight_map[{q(tensor)}] names the weight file {q(shard)}, "
                        f"which is absent from {src}"
                    )
                shards.append(shard)
        return shards, {str(k): v for k, v in weight_map.items()}
    if (src / SINGLE).is_file():
        return [SINGLE], None
    bins = sorted(p.name for p in src.glob("*.bin"))
    hint = (
        f" (it has {', '.join(bins[:2])}: convert PyTorch .bin weights to safetensors first)" if bins else ""
    )
    raise HFImportRefused(f"{src} has neither {SINGLE} nor {INDEX}{hint}")


def _check_index(index_map: dict[str, str], origin: dict[str, str]) -> None:
    for tensor, shard in index_map.items():
        if origin.get(tensor) != shard:
            where = f"is in {q(origin[tensor])}" if tensor in origin else "is in no weight file"
            raise HFImportRefused(
                f"{INDEX} field weight_map[{q(tensor)}] says {q(shard)} but the tensor {where}"
            )
    unlisted = sorted(set(origin) - set(index_map))
    if unlisted:
        raise HFImportRefused(
            f"{INDEX} field weight_map lacks tensor {q(unlisted[0])}, which {q(origin[unlisted[0]])} holds"
        )


def _other_files(src: Path, shards: set[str]) -> tuple[list[str], list[str]]:
    files: list[str] = []
    skipped: list[str] = []
    for path in sorted(src.iterdir()):
        name = path.name
        if name in shards:
            continue
        if path.is_symlink() and not path.resolve().is_file():
            skipped.append(f"{name} (a symlink to nothing)")
        elif not path.is_file():
            skipped.append(f"{name} (not a plain file)")
        elif name.endswith(OTHER_WEIGHTS):
            skipped.append(f"{name} (weights the pack does not use)")
        else:
            try:
                check_shard_filename(name, what="file name")
            except ValueError:
                skipped.append(f"{name} (a name a pack cannot hold)")
                continue
            files.append(name)
    return files, skipped


def _safe_name(name: str, what: str) -> None:
    try:
        check_shard_filename(name, what=what)
    except ValueError as e:
        raise HFImportRefused(str(e)) from None


def _check_tokenizer(path: Path) -> None:
    try:
        from tokenizers import Tokenizer

        Tokenizer.from_file(str(path))
    except ImportError:  # the tokenizers package is optional for importing; the gate loads it
        return
    except Exception as e:  # the Rust parser raises a plain Exception
        raise HFImportRefused(f"{TOKENIZER} does not load: {bounded(e)}") from None


def _same_bytes(
    src: Path,
    origin: dict[str, str],
    infos: dict[str, tuple[ShardHeader, TensorInfo]],
    name_a: str,
    name_b: str,
) -> bool:
    """Whether two tensors hold the same bytes (compared in chunks, straight from their files)."""
    (file_a, a), (file_b, b) = (origin[name_a], infos[name_a]), (origin[name_b], infos[name_b])
    if a[1].nbytes != b[1].nbytes or a[1].dtype != b[1].dtype:
        return False
    chunk = 8 * 1024 * 1024
    with (src / file_a).open("rb") as fa, (src / file_b).open("rb") as fb:
        fa.seek(a[0].data_start + a[1].begin)
        fb.seek(b[0].data_start + b[1].begin)
        left = a[1].nbytes
        while left:
            n = min(chunk, left)
            if fa.read(n) != fb.read(n):
                return False
            left -= n
    return True


def readme_license(path: Path) -> str | None:
    """The ``license:`` of a model card's YAML front matter, if it has one."""
    try:
        with path.open("rb") as f:
            text = f.read(65536).decode("utf-8", "replace")
    except OSError:
        return None
    match = re.match(r"---\s*\n(.*?)\n---", text, re.S)
    if match is None:
        return None
    found = re.search(r"^license:\s*['\"]?([A-Za-z0-9.+-]{1,64})['\"]?\s*$", match.group(1), re.M)
    return found.group(1) if found else None


__all__ = ["ConfigInvalid", "HFImportRefused", "PackInvalid", "Snapshot", "read_snapshot"]
