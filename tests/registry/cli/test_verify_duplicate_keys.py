"""``modelpack verify DIR`` decodes manifest.json as strictly as a publish: duplicate keys and NaN are refused."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from model_core.format.errors import InvalidManifest
from model_core.format.pack import parse_manifest_bytes
from pinner.unixfs import hash_file
from registry.cli.trust_cmd import verify

DATA = bytes(range(256)) * 10


def write_pack(tmp_path: Path, tail: bytes) -> Path:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "model-00001-of-00001.safetensors").write_bytes(DATA)
    manifest = {
        "format": "safetensors",
        "model_name": "tiny",
        "model_version": "1",
        "config": {"d_model": 8},
        "shards": [
            {
                "filename": "model-00001-of-00001.safetensors",
                "cid": str(hash_file(io.BytesIO(DATA)).cid),
                "sha256": "sha256:" + hashlib.sha256(DATA).hexdigest(),
            }
        ],
    }
    raw = json.dumps(manifest).encode()
    (pack / "manifest.json").write_bytes(raw[:-1] + tail)
    return pack


def test_a_well_formed_pack_verifies(tmp_path: Path) -> None:
    r = CliRunner().invoke(verify, [str(write_pack(tmp_path, b"}")), "--skip-signatures"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("tail", "needle"),
    [
        (b', "license": "MIT", "license": "Apache-2.0"}', "the key 'license' appears twice"),
        (b', "x": NaN}', "NaN is not a JSON number"),
    ],
)
def test_verify_refuses_what_publish_refuses(tmp_path: Path, tail: bytes, needle: str) -> None:
    pack = write_pack(tmp_path, tail)
    with pytest.raises(InvalidManifest, match=needle):
        parse_manifest_bytes((pack / "manifest.json").read_bytes())
    r = CliRunner().invoke(verify, [str(pack), "--skip-signatures"])
    assert r.exit_code == 1 and needle in r.output, r.output
