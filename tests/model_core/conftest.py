"""Fixtures for model_core: a tiny config and model, left-padded batches, and tiny pack folders with one defect at a time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from model_core.config import ModelConfig
from model_core.demo import demo_state_dict
from model_core.model import Transformer
from model_core.packbuild import write_pack

TINY = ModelConfig(
    vocab_size=64, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, dim_ff=48, max_seq_len=32
)


def left_pad(rows: list[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``rows`` padded on the left with ``pad_id``, and its attention mask (1 = real token)."""
    n = max(r.numel() for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, n - r.numel() :] = r
        mask[i, n - r.numel() :] = 1
    return ids, mask


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; two spin against each other on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return TINY


@pytest.fixture
def tiny_model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(TINY, init_std=0.3).eval()


def fake_cid(path: Path) -> str:
    return "bafk" + hashlib.sha256(path.name.encode()).hexdigest()[:20]


@pytest.fixture
def tiny_pack(tmp_path: Path) -> Path:
    """A valid demo 'tiny' pack in three shards."""
    sd, cfg = demo_state_dict("tiny", seed=0)
    write_pack(sd, cfg, tmp_path / "pack", max_shard_bytes=150_000, cid_of=fake_cid)
    return tmp_path / "pack"


def read_manifest(pack: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pack / "manifest.json").read_text())
    return data


def write_manifest(pack: Path, manifest: dict[str, Any]) -> None:
    (pack / "manifest.json").write_text(json.dumps(manifest))


def reseal(pack: Path, filename: str) -> None:
    """Update the manifest's sha256 and size of a shard we changed, so only the intended defect remains."""
    m = read_manifest(pack)
    data = (pack / filename).read_bytes()
    for s in m["shards"]:
        if s["filename"] == filename:
            s["sha256"] = "sha256:" + hashlib.sha256(data).hexdigest()
            s["size"] = len(data)
    write_manifest(pack, m)


def rewrite_shard(pack: Path, filename: str, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Load a shard's tensors, let ``edit`` change them, save, and reseal the manifest."""
    from safetensors.torch import load_file

    tensors = load_file(str(pack / filename))
    edit(tensors)
    save_file(tensors, str(pack / filename))
    reseal(pack, filename)


def shard_names(pack: Path) -> list[str]:
    return [s["filename"] for s in read_manifest(pack)["shards"]]


def shard_with(pack: Path, key: str) -> str:
    from safetensors import safe_open

    for name in shard_names(pack):
        with safe_open(str(pack / name), "pt") as f:
            if key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                return name
    raise KeyError(key)
