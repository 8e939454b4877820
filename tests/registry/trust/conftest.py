"""Fixtures for the trust tests: fresh Ed25519 keys and a small manifest with real shard CIDs and digests."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pinner.unixfs import hash_file
from registry.trust.keys import generate_private_key


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture
def other_key() -> Ed25519PrivateKey:
    return generate_private_key()


def shard_bytes(i: int) -> bytes:
    return bytes([i]) * (1000 + i)


@pytest.fixture
def manifest() -> dict[str, Any]:
    shards = [
        {
            "filename": f"model-0000{i}-of-00002.safetensors",
            "cid": str(hash_file(io.BytesIO(shard_bytes(i))).cid),
            "sha256": "sha256:" + hashlib.sha256(shard_bytes(i)).hexdigest(),
        }
        for i in (1, 2)
    ]
    return {
        "format": "safetensors",
        "model_name": "tiny",
        "model_version": "1.0.0",
        "config": {"d_model": 8, "num_layers": 1},
        "shards": shards,
        "license": "MIT",
        "provenance": {"build_ts": "2026-02-14T00:00:00Z", "git_commit": "abc123"},
    }


@pytest.fixture
def pack_dir(tmp_path: Path, manifest: dict[str, Any]) -> Path:
    """A pack directory: the manifest and the shard files it lists."""
    d = tmp_path / "pack"
    d.mkdir()
    for i, shard in zip((1, 2), manifest["shards"], strict=True):
        (d / shard["filename"]).write_bytes(shard_bytes(i))
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d
