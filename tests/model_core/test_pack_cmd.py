"""``modelpack pack`` and ``modelpack demo-pack`` (registry/cli/pack_cmd.py), end to end through click."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from model_core.demo import demo_state_dict
from model_core.loader import load_pack
from registry.app.main import cli
from registry.cli.pack_cmd import shard_cid


def test_demo_pack_makes_a_loadable_pack_with_cidv1_shards(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["demo-pack", str(tmp_path / "d"), "--preset", "tiny", "--name", "acme/tiny"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["model_name"] == "acme/tiny" and len(manifest["shards"]) >= 3
    for shard in manifest["shards"]:
        assert shard["cid"].startswith("bafk") and shard["cid"] == shard_cid(
            tmp_path / "d" / shard["filename"]
        )
    loaded = load_pack(tmp_path / "d")
    assert loaded.config.vocab_size == 256


def test_demo_pack_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["demo-pack", str(tmp_path / "d")]).exit_code == 0
    again = runner.invoke(cli, ["demo-pack", str(tmp_path / "d")])
    assert again.exit_code == 1 and "--force" in again.output
    assert runner.invoke(cli, ["demo-pack", str(tmp_path / "d"), "--force", "--seed", "2"]).exit_code == 0


def test_bad_name_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo-pack", str(tmp_path / "d"), "--name", "no-slash"])
    assert result.exit_code == 2 and "NAMESPACE/MODEL" in result.output


def test_pack_from_safetensors_and_config(tmp_path: Path) -> None:
    sd, cfg = demo_state_dict("tiny", seed=4)
    save_file({k: v for k, v in sd.items() if k != "lm_head.weight"}, str(tmp_path / "w.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    args = [
        "pack",
        str(tmp_path / "w.safetensors"),
        str(tmp_path / "out"),
        "--config",
        str(tmp_path / "config.json"),
    ]
    result = CliRunner().invoke(
        cli, [*args, "--max-shard-bytes", "200000", "--name", "acme/m", "--license", "MIT"]
    )
    assert result.exit_code == 0, result.output
    loaded = load_pack(tmp_path / "out")
    assert loaded.manifest.license == "MIT" and torch.equal(loaded.model.embed.weight, sd["embed.weight"])


def test_pack_from_a_torch_state_dict(tmp_path: Path) -> None:
    sd, cfg = demo_state_dict("tiny", seed=4)
    torch.save(sd, tmp_path / "w.pt")
    (tmp_path / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    args = ["pack", str(tmp_path / "w.pt"), str(tmp_path / "out"), "--config", str(tmp_path / "config.json")]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert load_pack(tmp_path / "out").config == cfg


@pytest.mark.parametrize(
    ("config", "message"),
    [({"num_kv_heads": 0}, "num_kv_heads=0 must be positive"), ("not json", "cannot read JSON config")],
)
def test_pack_bad_config_is_one_sentence(tmp_path: Path, config: object, message: str) -> None:
    sd, _ = demo_state_dict("tiny", seed=4)
    save_file({"embed.weight": sd["embed.weight"]}, str(tmp_path / "w.safetensors"))
    text = config if isinstance(config, str) else json.dumps(config)
    (tmp_path / "c.json").write_text(text)
    result = CliRunner().invoke(
        cli,
        ["pack", str(tmp_path / "w.safetensors"), str(tmp_path / "o"), "--config", str(tmp_path / "c.json")],
    )
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_pack_unreadable_state_file(tmp_path: Path) -> None:
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    (tmp_path / "c.json").write_text("{}")
    result = CliRunner().invoke(
        cli,
        ["pack", str(tmp_path / "w.safetensors"), str(tmp_path / "o"), "--config", str(tmp_path / "c.json")],
    )
    assert result.exit_code == 1 and "cannot read a state dict" in result.output
