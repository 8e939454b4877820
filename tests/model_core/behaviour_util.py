"""Helpers for the behavioural-gate tests: pack files, a tiny word-level tokenizer, the worker in-process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from multiformats import CID, multihash
from tokenizers import Tokenizer, models, pre_tokenizers

from model_core import worker
from model_core.behaviour import continuation_text
from model_core.generate import greedy_generate
from model_core.loader import load_pack
from tests.model_core.conftest import read_manifest, write_manifest

WORDS = 256  # the demo 'tiny' preset's vocabulary


def word_tokenizer(vocab_size: int = WORDS) -> Tokenizer:
    """Word-level: ``w0 .. w{n-2}`` are ids 0..n-2, anything else is ``[UNK]`` (the last id)."""
    vocab = {f"w{i}": i for i in range(vocab_size - 1)}
    vocab["[UNK]"] = vocab_size - 1
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def raw_cid(data: bytes) -> str:
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


def add_files(pack: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into the pack folder and list them in the manifest's ``files``."""
    m = read_manifest(pack)
    entries = [e for e in m.get("files", []) if e["filename"] not in files]
    for name, data in files.items():
        (pack / name).write_bytes(data)
        entries.append(
            {
                "filename": name,
                "cid": raw_cid(data),
                "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        )
    m["files"] = entries
    write_manifest(pack, m)


def add_tokenizer(pack: Path) -> Tokenizer:
    tok = word_tokenizer()
    add_files(pack, {"tokenizer.json": tok.to_str().encode()})
    return tok


def set_evaluation(pack: Path, evaluation: dict[str, Any]) -> None:
    m = read_manifest(pack)
    m["evaluation"] = evaluation
    write_manifest(pack, m)


def own_continuation(pack: Path, prompt: list[int], n: int, tok: Tokenizer | None = None) -> Any:
    """What the pack's model itself generates greedily: the new ids, or their text with ``tok``."""
    model = load_pack(pack).model
    new = greedy_generate(model, torch.tensor([prompt]), n)[0, len(prompt) :].tolist()
    return continuation_text(tok, prompt, new) if tok is not None else new


def run_worker(pack: Path, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    """The sandbox's child, in this process (the limits are the supervisor's; the checks are the same)."""
    out = tmp_path / "result.json"
    rc = worker.main([str(pack), "--result", str(out), "--threads", "1"])
    result: dict[str, Any] = json.loads(out.read_text())
    return rc, result
