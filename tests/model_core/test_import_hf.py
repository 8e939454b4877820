"""``modelpack import hf``: what the pack holds, and bad snapshots refused with one sentence naming the file
and the field or tensor, exit 1, nothing written beside or into OUT; the loader names HF tensors too."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from model_core.errors import ModelCoreError, PackInvalid
from model_core.loader import load_pack
from registry.cli import build_cli
from registry.cli.import_cmd import file_digest
from tests.model_core.conftest import read_manifest, write_manifest
from tests.model_core.hf_snapshots import hf_model, import_snapshot, save_snapshot


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine untied snapshot with a tokenizer, a model card and a stray .bin; copied per test."""
    folder = save_snapshot(hf_model(tie_word_embeddings=False), tmp_path_factory.mktemp("hf") / "snap")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    (folder / "tokenizer.json").write_text(json.dumps(_word_level_tokenizer()))
    (folder / "pytorch_model.bin").write_bytes(b"not used")
    return folder


def _word_level_tokenizer() -> dict[str, Any]:
    from tokenizers import Tokenizer, models

    return json.loads(Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")).to_str())


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _run(*args: str) -> Any:
    return CliRunner().invoke(build_cli(), ["import", "hf", *args, "--name", "test/tiny"])


def test_pack_holds_the_original_files_linked_with_a_manifest(snapshot: Path, tmp_path: Path) -> None:
    src = _copy(snapshot, tmp_path / "src")
    result = _run(str(src), str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    m = read_manifest(out)
    assert (m["layout"], m["model_name"], m["license"]) == ("hf-llama", "test/tiny", "apache-2.0")
    assert [s["filename"] for s in m["shards"]] == ["model.safetensors"]
    names = [f["filename"] for f in m["files"]]
    assert names == ["README.md", "config.json", "generation_config.json", "tokenizer.json"]
    assert "pytorch_model.bin" in result.output and not (out / "pytorch_model.bin").exists()
    for entry in m["shards"] + m["files"]:
        assert set(entry) == {"filename", "cid", "sha256", "size"}
        path = out / entry["filename"]
        assert path.read_bytes() == (src / entry["filename"]).read_bytes()
        assert path.stat().st_ino == (src / entry["filename"]).stat().st_ino  # a hard link, not a copy
        assert entry["sha256"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["size"] == path.stat().st_size and entry["cid"] == file_digest(path).cid
    assert m["tokenizer"] == {"type": "huggingface", "file": "tokenizer.json", "cid": m["files"][3]["cid"]}
    assert m["model_version"].startswith("hf-") and m["config"]["tie_weights"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]
    again = _run(str(src), str(tmp_path / "out2"))
    assert read_manifest(tmp_path / "out2")["model_version"] == m["model_version"]  # stable per snapshot
    assert again.exit_code == 0


def _edit_config(**changes: Any) -> Callable[[Path], None]:
    def edit(src: Path) -> None:
        data = json.loads((src / "config.json").read_text())
        data.update(changes)
        (src / "config.json").write_text(json.dumps(data))

    return edit


def _edit_tensors(edit: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def rewrite(src: Path) -> None:
        tensors = load_file(str(src / "model.safetensors"))
        edit(tensors)
        save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})

    return rewrite


def _index_naming_absent_shard(src: Path) -> None:
    names = list(load_file(str(src / "model.safetensors")))
    weight_map = {n: "model-00001-of-00002.safetensors" for n in names}
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


BAD: dict[str, tuple[Callable[[Path], None], str]] = {
    "architecture": (
        _edit_config(architectures=["Qwen2ForCausalLM"]),
        "config.json field architectures='Qwen2",
    ),
    "model-type": (_edit_config(model_type="gpt2"), "config.json field model_type='gpt2'"),
    "attention-bias": (_edit_config(attention_bias=True), "config.json field attention_bias=True"),
    "mlp-bias": (_edit_config(mlp_bias=True), "config.json field mlp_bias=True"),
    "activation": (_edit_config(hidden_act="gelu"), "config.json field hidden_act='gelu'"),
    "sliding-window": (_edit_config(sliding_window=16), "config.json field sliding_window=16"),
    "rope-yarn": (
        _edit_config(rope_parameters={"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4}),
        "config.json field rope_parameters.rope_type='yarn'",
    ),
    "old-rope-dynamic": (
        _edit_config(rope_parameters=None, rope_scaling={"type": "dynamic", "factor": 2.0}),
        "config.json field rope_scaling.rope_type='dynamic'",
    ),
    "bad-heads": (_edit_config(num_key_value_heads=3), "config.json field num_key_value_heads=3"),
    "missing-tensor": (
        _edit_tensors(lambda t: t.pop("model.layers.1.mlp.up_proj.weight")),
        "'model.layers.1.mlp.up_proj.weight'",
    ),
    "extra-tensor": (
        _edit_tensors(lambda t: t.__setitem__("model.layers.0.self_attn.q_proj.bias", torch.zeros(32))),
        "'model.layers.0.self_attn.q_proj.bias' (in 'model.safetensors')",
    ),
    "wrong-shape": (_edit_config(intermediate_size=40), "'model.layers.0.mlp.gate_proj.weight' has shape"),
    "mixed-dtypes": (
        _edit_tensors(lambda t: t.__setitem__("model.norm.weight", t["model.norm.weight"].half())),
        "'model.norm.weight' is F16",
    ),
    "tied-head-differs": (
        _edit_config(tie_word_embeddings=True),
        "model.embed_tokens.weight and lm_head.weight differ",
    ),
    "index-absent-shard": (
        _index_naming_absent_shard,
        "model.safetensors.index.json field weight_map['lm_head.weight'] names the weight file "
        "'model-00001-of-00002.safetensors', which is absent",
    ),
    "no-weights": (lambda src: (src / "model.safetensors").unlink(), "has neither model.safetensors"),
    "no-config": (lambda src: (src / "config.json").unlink(), "has no config.json"),
    "bad-tokenizer": (lambda src: (src / "tokenizer.json").write_text("{}"), "tokenizer.json does not load"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_snapshot_is_one_sentence_exit_1_and_nothing_written(
    snapshot: Path, tmp_path: Path, case: str
) -> None:
    make_bad, expected = BAD[case]
    src = _copy(snapshot, tmp_path / "src")
    make_bad(src)
    result = _run(str(src), str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    error = result.output.split("Error: ", 1)[1]
    assert expected in error and error.count("\n") == 1, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no OUT, no staging folder beside it


def test_out_holding_files_is_left_alone(snapshot: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = _run(str(snapshot), str(tmp_path / "out"))
    assert result.exit_code == 1 and "not an empty folder" in result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_bad_name_is_a_usage_error(snapshot: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_cli(), ["import", "hf", str(snapshot), str(tmp_path / "o"), "--name", "x"]
    )
    assert result.exit_code == 2 and not (tmp_path / "o").exists()


# --- the loader on hf-llama packs -------------------------------------------------------------------


@pytest.fixture
def pack(snapshot: Path, tmp_path: Path) -> Path:
    return import_snapshot(_copy(snapshot, tmp_path / "src"), tmp_path / "pack")


def _reseal(pack: Path, filename: str, key: str = "shards") -> None:
    m = read_manifest(pack)
    data = (pack / filename).read_bytes()
    for entry in m[key]:
        if entry["filename"] == filename:
            entry["sha256"] = "sha256:" + hashlib.sha256(data).hexdigest()
            entry["size"] = len(data)
    write_manifest(pack, m)


def _replace_shard(pack: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(str(pack / "model.safetensors"))
    edit(tensors)
    (pack / "model.safetensors").unlink()  # a hard link to the snapshot: never write through it
    save_file(tensors, str(pack / "model.safetensors"))
    _reseal(pack, "model.safetensors")


def test_loader_names_the_missing_hf_tensor(pack: Path) -> None:
    _replace_shard(pack, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(PackInvalid, match=r"lacks 1 tensor.*'lm_head.weight'"):
        load_pack(pack)


def test_loader_names_the_hf_tensor_with_a_wrong_shape(pack: Path) -> None:
    key = "model.layers.1.self_attn.k_proj.weight"
    _replace_shard(pack, lambda t: t.__setitem__(key, t[key][:8].clone()))
    with pytest.raises(PackInvalid, match=f"'{key}' has shape \\(8, 32\\) but"):
        load_pack(pack)


def test_loader_refuses_a_config_json_changed_after_import(pack: Path) -> None:
    config = pack / "config.json"
    data = json.loads(config.read_text())
    config.unlink()
    config.write_text(json.dumps({**data, "rms_norm_eps": 1e-3}))
    with pytest.raises(PackInvalid, match=re.escape("config.json does not match the sha256")):
        load_pack(pack)
    _reseal(pack, "config.json", key="files")  # resealed: now the manifest's own config disagrees
    with pytest.raises(
        ModelCoreError, match=re.escape("manifest config disagrees with config.json on rmsnorm_eps")
    ):
        load_pack(pack)


def test_loader_needs_config_json_listed_and_a_known_layout(pack: Path) -> None:
    m = read_manifest(pack)
    write_manifest(pack, {**m, "files": [f for f in m["files"] if f["filename"] != "config.json"]})
    with pytest.raises(PackInvalid, match=re.escape("must list config.json under the manifest's 'files'")):
        load_pack(pack)
    write_manifest(pack, {**m, "layout": "gpt-neox"})
    with pytest.raises(PackInvalid, match=re.escape("layout 'gpt-neox' is not supported")):
        load_pack(pack)


def test_hashing_with_a_progress_bar_gives_the_same_digest(
    snapshot: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from registry.cli import import_cmd

    plain = file_digest(snapshot / "model.safetensors")
    monkeypatch.setattr(import_cmd, "PROGRESS_MIN_BYTES", 0)
    assert file_digest(snapshot / "model.safetensors") == plain
    assert "hashing model.safetensors" in capsys.readouterr().err


def test_an_imported_pack_passes_the_sandboxed_gate(pack: Path, tmp_path: Path) -> None:
    from model_core.sandbox import validate_pack

    report = validate_pack(pack, tmp_path / "report.json")
    assert report["verdict"] == "pass", report
