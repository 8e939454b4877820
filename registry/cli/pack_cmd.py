"""``modelpack pack`` and ``modelpack demo-pack``: build a ModelPack folder (shards + manifest.json).

model_core and torch are imported inside the commands (this module is the composition root for them),
so ``modelpack --help`` stays fast. Shard CIDs are CIDv1 with raw leaves, from the pinner's UnixFS code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3


def shard_cid(path: Path) -> str:
    """The CIDv1 (raw leaves) ``ipfs add --cid-version=1`` gives the shard file."""
    from pinner.unixfs import UnixfsParams, hash_file

    return str(hash_file(path, UnixfsParams(cid_version=1, raw_leaves=True)).cid)


def _check_name(name: str | None) -> None:
    if name is not None and not NAME_RE.fullmatch(name):
        raise click.BadParameter(
            f"{name!r} is not NAMESPACE/MODEL (letters, digits, '.', '_', '-')", param_hint="--name"
        )


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if (out_dir / "manifest.json").exists() and not force:
        raise click.ClickException(
            f"{out_dir} already holds a pack (manifest.json); pass --force to overwrite it"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise click.ClickException(f"{out_dir} exists and is not a folder")


def _write(
    state: dict[str, Any], config: Any, out_dir: Path, max_shard_bytes: int, extra: dict[str, Any]
) -> None:
    from model_core.errors import ModelCoreError
    from model_core.packbuild import write_pack

    try:
        manifest = write_pack(
            state, config, out_dir, max_shard_bytes=max_shard_bytes, cid_of=shard_cid, manifest_extra=extra
        )
    except ModelCoreError as e:
        raise click.ClickException(e.message) from None
    except OSError as e:
        raise click.ClickException(f"cannot write the pack to {out_dir}: {e.strerror or e}") from None
    total = sum(s["size"] for s in manifest["shards"])
    click.echo(
        f"wrote {out_dir / 'manifest.json'}: {manifest['model_name']}, {len(manifest['shards'])} shard(s), {total} bytes"
    )
    for s in manifest["shards"]:
        click.echo(f"  {s['filename']}  {s['cid']}  {s['sha256']}")


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
    except Exception as e:  # any parse failure of a user file is one sentence, not a traceback
        raise click.ClickException(f"cannot read a state dict from {path}: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise click.ClickException(f"{path} does not hold a flat dict of tensors")
    return state


def _load_config(path: Path) -> dict[str, Any]:
    from model_core.config import ModelConfig
    from model_core.errors import ConfigInvalid

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot read JSON config {path}: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]  # a manifest (or any wrapper) holding the config
    try:
        cfg, unknown = ModelConfig.from_dict(data)
    except ConfigInvalid as e:
        raise click.ClickException(f"{path}: {e.message}") from None
    if unknown:
        click.echo(f"note: ignoring unknown config keys {', '.join(unknown)}", err=True)
    return cfg.to_dict()


@click.command("pack")
@click.argument("state_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Model config JSON (the manifest's config object).",
)
@click.option(
    "--max-shard-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_SHARD_BYTES, show_default=True
)
@click.option("--name", default=None, help="Model name NAMESPACE/MODEL for the manifest.")
@click.option("--model-version", default=None, help="Version string for the manifest.")
@click.option("--license", "license_", default=None, help="License identifier, e.g. Apache-2.0.")
@click.option("--force", is_flag=True, help="Overwrite a pack already in OUT_DIR.")
def pack(
    state_file: Path,
    out_dir: Path,
    config_file: Path,
    max_shard_bytes: int,
    name: str | None,
    model_version: str | None,
    license_: str | None,
    force: bool,
) -> None:
    """Turn STATE_FILE (.safetensors, or a torch state dict loaded with weights_only) into a pack in OUT_DIR."""
    _check_name(name)
    _check_out_dir(out_dir, force)
    config = _load_config(config_file)
    state = _load_state(state_file)
    extra: dict[str, Any] = {}
    if name:
        extra["model_name"] = name
    if model_version:
        extra["model_version"] = model_version
    if license_:
        extra["license"] = license_
    _write(state, config, out_dir, max_shard_bytes, extra)


@click.command("demo-pack")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--preset", type=click.Choice(["tiny", "small"]), default="tiny", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the weights.")
@click.option("--name", default=None, help="Model name NAMESPACE/MODEL (default demo/PRESET).")
@click.option("--max-shard-bytes", type=click.IntRange(min=1), default=None, help="Default: about 3 shards.")
@click.option("--force", is_flag=True, help="Overwrite a pack already in OUT_DIR.")
def demo_pack(
    out_dir: Path, preset: str, seed: int, name: str | None, max_shard_bytes: int | None, force: bool
) -> None:
    """Write a random-weight pack to OUT_DIR for trying the system (nothing is downloaded)."""
    _check_name(name)
    _check_out_dir(out_dir, force)
    from model_core.demo import demo_state_dict

    state, cfg = demo_state_dict(preset, seed)
    if max_shard_bytes is None:
        total = sum(t.numel() * t.element_size() for k, t in state.items() if k != "lm_head.weight")
        max_shard_bytes = max(1, total // 3 + 1)
    extra = {
        "model_name": name or f"demo/{preset}",
        "model_version": f"seed-{seed}",
        "license": "CC0-1.0",
        "provenance": {
            "generator": "modelpack demo-pack",
            "preset": preset,
            "seed": seed,
            "weights": "random",
        },
    }
    _write(state, cfg, out_dir, max_shard_bytes, extra)
