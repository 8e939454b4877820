"""The pack builder and the demo presets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from model_core.demo import PRESETS, demo_state_dict
from model_core.errors import ModelCoreError
from model_core.generate import greedy_generate
from model_core.loader import load_pack
from model_core.packbuild import write_pack
from tests.model_core.conftest import fake_cid


def test_write_pack_shards_by_size_and_records_digests(tmp_path: Path) -> None:
    sd, cfg = demo_state_dict("tiny", seed=3)
    manifest = write_pack(
        sd, cfg, tmp_path / "p", max_shard_bytes=100_000, cid_of=fake_cid, manifest_extra={"license": "MIT"}
    )
    on_disk = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert on_disk == manifest and manifest["license"] == "MIT" and manifest["format"] == "safetensors"
    assert manifest["config"]["vocab_size"] == 256 and len(manifest["shards"]) > 2
    for shard in manifest["shards"]:
        data = (tmp_path / "p" / shard["filename"]).read_bytes()
        assert shard["sha256"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert shard["size"] == len(data) and shard["cid"] == fake_cid(Path(shard["filename"]))
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == sorted(
        ["manifest.json", *(s["filename"] for s in manifest["shards"])]
    )  # no temporary files left behind


def test_rewriting_a_pack_removes_its_old_shards(tmp_path: Path) -> None:
    sd, cfg = demo_state_dict("tiny", seed=0)
    write_pack(sd, cfg, tmp_path / "p", max_shard_bytes=100_000, cid_of=fake_cid)
    (tmp_path / "p" / "notes.txt").write_text("mine")
    manifest = write_pack(sd, cfg, tmp_path / "p", max_shard_bytes=1 << 30, cid_of=fake_cid)
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == sorted(["manifest.json", "notes.txt", manifest["shards"][0]["filename"]])


def test_tied_weights_are_stored_once(tmp_path: Path) -> None:
    sd, cfg = demo_state_dict("tiny", seed=0)
    manifest = write_pack(sd, cfg, tmp_path / "p", max_shard_bytes=1 << 30, cid_of=fake_cid)
    with safe_open(str(tmp_path / "p" / manifest["shards"][0]["filename"]), "pt") as f:
        keys = set(f.keys())
    assert "embed.weight" in keys and "lm_head.weight" not in keys


def test_differing_tied_weights_are_refused(tmp_path: Path) -> None:
    sd, cfg = demo_state_dict("tiny", seed=0)
    sd["lm_head.weight"] = sd["embed.weight"] + 1
    with pytest.raises(ModelCoreError, match="differ"):
        write_pack(sd, cfg, tmp_path / "p", cid_of=fake_cid)


def test_manifest_extra_cannot_replace_shards(tmp_path: Path) -> None:
    sd, cfg = demo_state_dict("tiny", seed=0)
    with pytest.raises(ModelCoreError, match="shards"):
        write_pack(sd, cfg, tmp_path / "p", cid_of=fake_cid, manifest_extra={"shards": []})


def test_demo_state_dict_is_deterministic_per_seed() -> None:
    a, _ = demo_state_dict("tiny", seed=5)
    b, _ = demo_state_dict("tiny", seed=5)
    c, _ = demo_state_dict("tiny", seed=6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embed.weight"], c["embed.weight"])


def test_tiny_preset_is_really_small() -> None:
    assert PRESETS["tiny"].parameter_count() < 200_000


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_demo_generation_is_not_degenerate(tmp_path: Path, preset: str) -> None:
    sd, cfg = demo_state_dict(preset, seed=0)
    write_pack(sd, cfg, tmp_path / "p", cid_of=fake_cid)
    model = load_pack(tmp_path / "p").model
    out = greedy_generate(model, torch.tensor([[1, 2, 3, 4]]), 24)[0, 4:]
    assert len(set(out.tolist())) >= 8


def test_unknown_preset() -> None:
    with pytest.raises(ModelCoreError, match="unknown demo preset 'huge'"):
        demo_state_dict("huge")
