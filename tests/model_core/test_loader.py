"""The pack loader: seed bug 7, the issue's bad inputs, and zero-copy use of the verified bytes."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_model

from model_core import shardread
from model_core.config import ModelConfig
from model_core.demo import demo_state_dict
from model_core.errors import PackInvalid, PackTooLarge
from model_core.loader import LoaderConfig, load_pack
from model_core.model import Transformer
from model_core.packbuild import write_pack
from tests.model_core.conftest import (
    fake_cid,
    read_manifest,
    reseal,
    rewrite_shard,
    shard_names,
    shard_with,
    write_manifest,
)


def raw_shard(header: dict[str, Any], data: bytes, declared_len: int | None = None) -> bytes:
    body = json.dumps(header).encode()
    return struct.pack("<Q", declared_len if declared_len is not None else len(body)) + body + data


def replace_first_shard(pack: Path, raw: bytes) -> str:
    name = shard_names(pack)[0]
    (pack / name).write_bytes(raw)
    reseal(pack, name)
    return name


def test_valid_pack_loads_and_matches_the_source_model(tiny_pack: Path) -> None:
    sd, cfg = demo_state_dict("tiny", seed=0)
    loaded = load_pack(tiny_pack)
    assert loaded.config == cfg and loaded.dtype == "float32"
    assert loaded.model.lm_head.weight is loaded.model.embed.weight
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert not loaded.model.training


def test_parameters_are_views_of_the_verified_buffers(
    tiny_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffers: list[bytearray] = []
    original = shardread.read_verified

    def capture(shard: Any, chunk: int) -> bytearray:
        buf = original(shard, chunk)
        buffers.append(buf)
        return buf

    monkeypatch.setattr(shardread, "read_verified", capture)
    model = load_pack(tiny_pack).model
    ranges = []
    for b in buffers:
        start = torch.frombuffer(b, dtype=torch.uint8).data_ptr()
        ranges.append((start, start + len(b)))
    for name, p in model.named_parameters():
        assert any(lo <= p.data_ptr() < hi for lo, hi in ranges), f"{name} was copied"


def test_a_file_changed_after_verification_does_not_change_the_model(
    tiny_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = shardread.read_verified

    def then_tamper(shard: Any, chunk: int) -> bytearray:
        buf = original(shard, chunk)
        data = bytearray(shard.path.read_bytes())
        data[-4:] = b"\x00\x00\xc0\x7f"  # a NaN in the last weight, same size
        shard.path.write_bytes(data)
        return buf

    monkeypatch.setattr(shardread, "read_verified", then_tamper)
    model = load_pack(tiny_pack).model
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_seed_example_manifest_keys_are_accepted(tiny_pack: Path) -> None:
    """Bug 7: ModelPack(**data) raised TypeError on the spec's own tokenizer/license/provenance keys."""
    m = read_manifest(tiny_pack)
    m["tokenizer"] = {"type": "bpe", "cid": "bafy..."}
    m["license"] = "Apache-2.0"
    m["provenance"] = {"build_ts": "2026-02-14T00:00:00Z"}
    m["x_future"] = 1
    m["config"]["rope_scaling_note"] = "ignored"
    write_manifest(tiny_pack, m)
    loaded = load_pack(tiny_pack)
    assert loaded.manifest.license == "Apache-2.0" and loaded.manifest.extra == {"x_future": 1}
    assert loaded.ignored_config_keys == ["rope_scaling_note"]


def _single_shard_pack(tmp_path: Path, state: dict[str, torch.Tensor], cfg: ModelConfig) -> Path:
    write_pack(state, cfg, tmp_path / "p", max_shard_bytes=1 << 40, cid_of=fake_cid)
    return tmp_path / "p"


def test_tied_pack_saved_by_safetensors_save_model_loads(tmp_path: Path) -> None:
    """Bug 7: save_model stores one copy of tied weights; the seed's strict loading failed on it."""
    sd, cfg = demo_state_dict("tiny", seed=1)
    pack = _single_shard_pack(tmp_path, sd, cfg)
    model = Transformer(cfg)
    model.load_state_dict(sd)
    name = shard_names(pack)[0]
    save_model(model, str(pack / name))
    reseal(pack, name)
    loaded = load_pack(pack).model
    assert loaded.lm_head.weight is loaded.embed.weight
    assert torch.equal(loaded.embed.weight, sd["embed.weight"])


def test_differing_tied_copies_are_refused(tmp_path: Path) -> None:
    """Bug 7: with both copies present and different, the seed silently replaced the embedding."""
    sd, cfg = demo_state_dict("tiny", seed=1)
    pack = _single_shard_pack(tmp_path, sd, cfg)
    name = shard_names(pack)[0]
    rewrite_shard(pack, name, lambda t: t.__setitem__("lm_head.weight", t["embed.weight"] * 2))
    with pytest.raises(PackInvalid, match=r"embed.weight and lm_head.weight differ"):
        load_pack(pack)


def test_bf16_pack_runs_in_bf16(tmp_path: Path) -> None:
    """Bug 7: the seed upcast bf16 shards to fp32 without a word."""
    sd, cfg = demo_state_dict("tiny", seed=0)
    pack = _single_shard_pack(tmp_path, {k: v.bfloat16() for k, v in sd.items()}, cfg)
    loaded = load_pack(pack)
    assert loaded.dtype == "bfloat16" and loaded.model.embed.weight.dtype == torch.bfloat16
    m = read_manifest(pack)
    m["config"]["dtype"] = "float32"
    write_manifest(pack, m)
    with pytest.raises(PackInvalid, match="dtype float32 but the weights are bfloat16"):
        load_pack(pack)


# -- the "Bad input" list ------------------------------------------------------------------


def test_truncated_shard(tiny_pack: Path) -> None:
    name = shard_names(tiny_pack)[0]
    data = (tiny_pack / name).read_bytes()
    (tiny_pack / name).write_bytes(data[:-100])
    with pytest.raises(PackInvalid, match=f"{name}.*manifest says {len(data)}.*truncated"):
        load_pack(tiny_pack)


def test_truncated_shard_without_size_in_manifest(tiny_pack: Path) -> None:
    name = shard_names(tiny_pack)[0]
    data = (tiny_pack / name).read_bytes()
    (tiny_pack / name).write_bytes(data[:-100])
    reseal(tiny_pack, name)
    m = read_manifest(tiny_pack)
    for s in m["shards"]:
        s.pop("size")
    write_manifest(tiny_pack, m)
    with pytest.raises(PackInvalid, match="truncated"):
        load_pack(tiny_pack)


def test_one_flipped_byte(tiny_pack: Path) -> None:
    name = shard_names(tiny_pack)[1]
    data = bytearray((tiny_pack / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tiny_pack / name).write_bytes(data)
    with pytest.raises(PackInvalid, match=f"{name}.*sha256.*corrupted or tampered"):
        load_pack(tiny_pack)


def test_header_length_beyond_the_file(tiny_pack: Path) -> None:
    replace_first_shard(tiny_pack, raw_shard({}, b"", declared_len=5000))
    with pytest.raises(PackInvalid, match="5000-byte header but the file is only"):
        load_pack(tiny_pack)


def test_header_of_200_mb_declared(tiny_pack: Path) -> None:
    replace_first_shard(tiny_pack, raw_shard({"a": 1}, b"", declared_len=200_000_000))
    with pytest.raises(PackInvalid, match="200000000-byte safetensors header, more than the limit"):
        load_pack(tiny_pack)


def test_overlapping_offsets(tiny_pack: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    replace_first_shard(tiny_pack, raw_shard(header, bytes(24)))
    with pytest.raises(PackInvalid, match="'b' starts at data offset 8, which overlaps"):
        load_pack(tiny_pack)


def test_unknown_dtype(tiny_pack: Path) -> None:
    header = {"a": {"dtype": "F8_E9M9", "shape": [4], "data_offsets": [0, 4]}}
    replace_first_shard(tiny_pack, raw_shard(header, bytes(4)))
    with pytest.raises(PackInvalid, match="dtype 'F8_E9M9', not one of"):
        load_pack(tiny_pack)


def test_metadata_must_be_strings(tiny_pack: Path) -> None:
    header = {"__metadata__": {"format": 1}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    replace_first_shard(tiny_pack, raw_shard(header, bytes(4)))
    with pytest.raises(PackInvalid, match="__metadata__"):
        load_pack(tiny_pack)


def test_wrong_shape(tiny_pack: Path) -> None:
    key = "layers.0.mlp.w2.weight"
    rewrite_shard(tiny_pack, shard_with(tiny_pack, key), lambda t: t.__setitem__(key, t[key][:, :-1].clone()))
    with pytest.raises(PackInvalid, match=f"'{key}' has shape \\(64, 171\\) but the manifest config needs"):
        load_pack(tiny_pack)


def test_missing_key(tiny_pack: Path) -> None:
    key = "layers.1.norm2.weight"
    rewrite_shard(tiny_pack, shard_with(tiny_pack, key), lambda t: t.pop(key))
    with pytest.raises(PackInvalid, match=f"lacks 1 tensor.*{key}"):
        load_pack(tiny_pack)


def test_unexpected_key(tiny_pack: Path) -> None:
    name = shard_names(tiny_pack)[0]
    rewrite_shard(tiny_pack, name, lambda t: t.__setitem__("layers.9.extra", torch.ones(3)))
    with pytest.raises(PackInvalid, match=r"does not use.*layers.9.extra"):
        load_pack(tiny_pack)


def test_key_in_two_shards(tiny_pack: Path) -> None:
    first, second = shard_names(tiny_pack)[:2]
    key = "final_norm.weight"
    home = shard_with(tiny_pack, key)
    other = second if home == first else first
    rewrite_shard(tiny_pack, other, lambda t: t.__setitem__(key, torch.ones(64)))
    with pytest.raises(PackInvalid, match=f"'{key}' is in two shards"):
        load_pack(tiny_pack)


@pytest.mark.parametrize("bad", ["../model.safetensors", "/etc/passwd", "sub/x.safetensors", ".hidden", ".."])
def test_unsafe_filenames(tiny_pack: Path, bad: str) -> None:
    m = read_manifest(tiny_pack)
    m["shards"][0]["filename"] = bad
    write_manifest(tiny_pack, m)
    with pytest.raises(PackInvalid, match="unsafe"):
        load_pack(tiny_pack)


def test_symlinked_shard_pointing_outside_the_folder(tiny_pack: Path, tmp_path: Path) -> None:
    name = shard_names(tiny_pack)[0]
    outside = tmp_path / "elsewhere.safetensors"
    os.replace(tiny_pack / name, outside)
    (tiny_pack / name).symlink_to(outside)
    with pytest.raises(PackInvalid, match=f"{name}.*symlink.*outside the pack folder"):
        load_pack(tiny_pack)
    # The gate may lay a pack out as links into its own store, which it names explicitly.
    assert load_pack(tiny_pack, LoaderConfig(allowed_roots=(tmp_path,))).dtype == "float32"


def test_manifest_config_disagrees_with_tensors(tiny_pack: Path) -> None:
    m = read_manifest(tiny_pack)
    m["config"]["num_kv_heads"] = 4
    write_manifest(tiny_pack, m)
    with pytest.raises(PackInvalid, match=r"k_proj.weight' has shape.*config and weights disagree"):
        load_pack(tiny_pack)


@pytest.mark.parametrize("early", [False, True], ids=["in-call", "read-started-early"])
def test_pack_over_the_memory_budget_is_refused_before_reading(
    tiny_pack: Path, monkeypatch: pytest.MonkeyPatch, early: bool
) -> None:
    def must_not_read(*_: Any) -> bytearray:
        raise AssertionError("shard data was read")

    monkeypatch.setattr(shardread, "read_verified", must_not_read)
    config = LoaderConfig(memory_budget_bytes=100_000, overhead_bytes=0)
    with pytest.raises(PackTooLarge) as e:
        load_pack(tiny_pack, config, early=shardread.PackRead(tiny_pack, config) if early else None)
    assert e.value.needed_bytes > 100_000 and "budget of 100000 bytes" in str(e.value)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(format="pickle"), "format 'pickle' is not supported"),
        (lambda m: m.update(shards=[]), "non-empty list"),
        (lambda m: m["shards"][0].update(sha256="abc"), "must be 'sha256:' followed by 64"),
        (lambda m: m["shards"].append(dict(m["shards"][0])), "listed twice"),
        (lambda m: m.update(config=[1]), "config' must be a JSON object"),
    ],
)
def test_bad_manifests(tiny_pack: Path, edit: Any, match: str) -> None:
    m = read_manifest(tiny_pack)
    edit(m)
    write_manifest(tiny_pack, m)
    with pytest.raises(PackInvalid, match=match):
        load_pack(tiny_pack)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(PackInvalid, match=r"needs a manifest.json"):
        load_pack(tmp_path)


def test_untied_pack_without_final_norm_loads_and_passes_smoke(tmp_path: Path) -> None:
    from model_core.smoke import run_smoke

    cfg = ModelConfig(
        vocab_size=48,
        d_model=16,
        num_layers=2,
        num_heads=2,
        num_kv_heads=2,
        dim_ff=24,
        tie_weights=False,
        final_norm=False,
    )
    torch.manual_seed(0)
    model = Transformer(cfg, init_std=0.3)
    pack = _single_shard_pack(tmp_path, model.state_dict(), cfg)
    loaded = load_pack(pack)
    assert loaded.model.lm_head.weight is not loaded.model.embed.weight and loaded.model.final_norm is None
    assert run_smoke(loaded.model)["passed"]
    name = shard_names(pack)[0]
    rewrite_shard(pack, name, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(PackInvalid, match=r"lacks 1 tensor.*lm_head\.weight"):
        load_pack(pack)


def _plan(path: Path, data: bytes, size: int | None = None) -> Any:
    from types import SimpleNamespace

    entry = SimpleNamespace(filename=path.name, sha256_hex=hashlib.sha256(data).hexdigest())
    return SimpleNamespace(entry=entry, path=path, size=len(data) if size is None else size)


@pytest.mark.parametrize("chunk", [1 << 20, 1000], ids=["one-pass", "pipelined"])
def test_read_verified_keeps_exactly_the_hashed_bytes(tmp_path: Path, chunk: int) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes: one chunk, or 11 chunks read ahead by a second thread
    path = tmp_path / "s.safetensors"
    path.write_bytes(data)
    assert bytes(shardread.read_verified(_plan(path, data), chunk)) == data
    bad = bytearray(data)
    bad[7777] ^= 1
    path.write_bytes(bad)
    with pytest.raises(PackInvalid, match=r"sha256.*corrupted or tampered"):
        shardread.read_verified(_plan(path, data), chunk)
    for changed in (data + b"more", data[:-10]):  # grew or shrank between the size check and the read
        path.write_bytes(changed)
        with pytest.raises(PackInvalid, match="changed size while it was being read"):
            shardread.read_verified(_plan(path, data), chunk)


def test_a_read_error_in_the_reader_thread_reaches_the_caller(tmp_path: Path) -> None:
    data = b"x" * 5000
    with pytest.raises(IsADirectoryError):
        shardread.read_verified(_plan(tmp_path, data), 1000)  # a directory: the reader thread's open fails


def test_reads_started_early_give_the_same_model_and_the_same_errors(tiny_pack: Path) -> None:
    """The sandbox worker starts the reads (``PackRead``) before it imports torch; load_pack then takes them."""
    want = load_pack(tiny_pack).model.state_dict()
    got = load_pack(tiny_pack, early=shardread.PackRead(tiny_pack, LoaderConfig())).model.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)

    name = shard_names(tiny_pack)[1]
    data = bytearray((tiny_pack / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tiny_pack / name).write_bytes(data)
    early = shardread.PackRead(tiny_pack, LoaderConfig())  # fails in its thread; raised by load_pack
    with pytest.raises(PackInvalid, match=f"{name}.*sha256.*corrupted or tampered"):
        load_pack(tiny_pack, early=early)


def test_the_shard_reader_needs_no_torch() -> None:
    # nor the full manifest format: the worker starts its reads before these imports would end
    heavy = ("torch", "pydantic", "multiformats", "rfc8785")
    code = f"import sys, model_core.shardread, model_core.manifest; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
