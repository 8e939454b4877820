"""Tiny real packs for the gate's tests: good ones, and each defect of issue #8 made on purpose.

Each defect changes exactly one thing; where bytes change, the manifest is re-sealed (sha256, size, CID)
unless the defect *is* the mismatch (``flip``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinner.unixfs import UnixfsParams, hash_file
from registry.trust.keys import public_key_of
from registry.trust.signatures import sign_manifest

DEFECTS = ("flip", "nan", "shape", "config")


def cid_of(data: bytes) -> str:
    return str(hash_file(io.BytesIO(data), UnixfsParams(cid_version=1, raw_leaves=True)).cid)


def make_pack(out: Path, *, seed: int = 0, defect: str | None = None, version: str | None = None) -> Path:
    """A tiny demo pack in ``out`` (3 shards), optionally with one defect."""
    from model_core.demo import demo_state_dict
    from model_core.packbuild import write_pack

    state, cfg = demo_state_dict("tiny", seed)
    total = sum(t.numel() * t.element_size() for k, t in state.items() if k != "lm_head.weight")
    write_pack(
        state,
        cfg,
        out,
        max_shard_bytes=total // 3 + 1,
        cid_of=lambda p: cid_of(p.read_bytes()),
        manifest_extra={"model_name": "acme/tiny", "model_version": version or f"seed-{seed}"},
    )
    if defect is not None:
        apply_defect(out, defect)
    return out


def manifest_of(pack: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pack / "manifest.json").read_text())
    return data


def write_manifest(pack: Path, manifest: dict[str, Any]) -> None:
    (pack / "manifest.json").write_text(json.dumps(manifest, indent=2))


def reseal(pack: Path, filename: str) -> None:
    m = manifest_of(pack)
    data = (pack / filename).read_bytes()
    for s in m["shards"]:
        if s["filename"] == filename:
            s["sha256"] = "sha256:" + hashlib.sha256(data).hexdigest()
            s["size"] = len(data)
            s["cid"] = cid_of(data)
    write_manifest(pack, m)


def _edit_tensors(pack: Path, edit: Any) -> None:
    from safetensors.torch import load_file, save_file

    name = manifest_of(pack)["shards"][0]["filename"]
    tensors = load_file(str(pack / name))
    edit(tensors)
    save_file(tensors, str(pack / name))
    reseal(pack, name)


def apply_defect(pack: Path, defect: str) -> None:
    import torch

    if defect == "flip":  # one byte of tensor data, manifest untouched: sha256 and CID no longer match
        name = manifest_of(pack)["shards"][1]["filename"]
        data = bytearray((pack / name).read_bytes())
        data[-17] ^= 0x01
        (pack / name).write_bytes(bytes(data))
    elif defect == "nan":

        def nan(t: dict[str, Any]) -> None:
            key = next(k for k, v in t.items() if v.dim() == 2)
            t[key] = t[key].clone()
            t[key][0, 0] = float("nan")

        _edit_tensors(pack, nan)
    elif defect == "shape":

        def shape(t: dict[str, Any]) -> None:
            key = next(k for k, v in t.items() if v.dim() == 2)
            rows, cols = t[key].shape
            t[key] = torch.randn(rows, cols + 1) * 0.02

        _edit_tensors(pack, shape)
    elif defect == "config":  # the manifest's config says 3 layers; the tensors hold 2
        m = manifest_of(pack)
        m["config"]["num_layers"] = m["config"]["num_layers"] + 1
        write_manifest(pack, m)
    else:
        raise ValueError(defect)


def sign(pack: Path, key: Ed25519PrivateKey) -> None:
    write_manifest(pack, sign_manifest(manifest_of(pack), key))


def key_b64(key: Ed25519PrivateKey) -> str:
    return public_key_of(key).b64


def key_id(key: Ed25519PrivateKey) -> str:
    return public_key_of(key).key_id


def policy_file(path: Path, *keys: Ed25519PrivateKey) -> Path:
    path.write_text(json.dumps({"version": 1, "namespaces": {"*": {"keys": [key_b64(k) for k in keys]}}}))
    return path


def shard_files(pack: Path) -> list[tuple[str, bytes]]:
    return [(s["filename"], (pack / s["filename"]).read_bytes()) for s in manifest_of(pack)["shards"]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class FakeRunner:
    """Stands in for the sandbox: records calls, answers ``result`` (optionally checking the pack dir)."""

    def __init__(self, result: dict[str, Any] | None = None, check: Any = None) -> None:
        self.result = result or {"verdict": "pass", "reason": "ok"}
        self.check = check
        self.calls: list[Path] = []

    async def __call__(
        self, pack_dir: Path, report_path: Path, budget: Any, allowed_roots: Any
    ) -> dict[str, Any]:
        self.calls.append(pack_dir)
        if self.check is not None:
            self.check(pack_dir)
        return dict(self.result)
