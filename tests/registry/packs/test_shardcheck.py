"""The one shard verifier: size, UnixFS CID and sha256 against declared values, and its users agree."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest

from model_core.format.digest import Sha256Digest
from pinner.content_errors import InvalidCid
from pinner.unixfs import PROFILES, hash_file
from registry.gate.shards import ShardSpec, verify_file
from registry.packs import shardcheck
from registry.verify.packcheck import PackReport, check_shards

DATA = random.Random(1).randbytes(300_000)  # more than one v0 chunk: a real dag-pb root


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    path = tmp_path / "model-00001-of-00001.safetensors"
    path.write_bytes(DATA)
    return path


def declared() -> tuple[str, Sha256Digest]:
    return str(hash_file(io.BytesIO(DATA)).cid), Sha256Digest(hashlib.sha256(DATA).hexdigest())


def test_matching_bytes_verify(shard: Path) -> None:
    cid, sha = declared()
    check = shardcheck.verify_file(shard, cid=cid, sha256=sha, size=len(DATA))
    assert check.ok and check.first() is None and check.digest.size == len(DATA)
    with shard.open("rb") as f:  # a stream works as well as a path
        assert shardcheck.verify_file(f, cid=cid, sha256=sha).ok


def test_each_contradiction_is_named_in_order(shard: Path) -> None:
    cid, sha = declared()
    other_cid = str(hash_file(io.BytesIO(b"other")).cid)
    check = shardcheck.verify_file(shard, cid=other_cid, sha256=Sha256Digest("0" * 64), size=5)
    assert [m.what for m in check.mismatches] == ["size", "CID", "sha256"]
    assert check.first() == f"size is {len(DATA)}, but the manifest says 5"
    assert str(check.mismatches[1]) == f"CID is {cid}, but the manifest says {other_cid}"
    assert str(check.mismatches[2]) == f"sha256 is {sha}, but the manifest says sha256:{'0' * 64}"


def test_undeclared_size_and_cid_are_not_checked(shard: Path) -> None:
    _, sha = declared()
    assert shardcheck.verify_file(shard, cid=None, sha256=sha).ok


def test_profile_decides_how_the_cid_is_rebuilt(shard: Path) -> None:
    v1 = str(hash_file(io.BytesIO(DATA), PROFILES["unixfs-v1-2025"]).cid)
    _, sha = declared()
    assert shardcheck.verify_file(shard, cid=v1, sha256=sha, profile="unixfs-v1-2025").ok
    assert not shardcheck.verify_file(shard, cid=v1, sha256=sha).ok  # Kubo's v1 defaults chunk differently
    with pytest.raises(ValueError, match="unknown UnixFS profile"):
        shardcheck.verify_file(shard, cid=v1, sha256=sha, profile="bogus")


def test_a_cid_that_cannot_be_verified_is_refused(shard: Path) -> None:
    _, sha = declared()
    with pytest.raises(InvalidCid):
        shardcheck.verify_file(shard, cid="not-a-cid", sha256=sha)


def test_the_gate_and_verify_report_what_the_verifier_finds(shard: Path) -> None:
    cid, sha = declared()
    assert verify_file(shard, ShardSpec(shard.name, cid, sha, len(DATA))) is None
    wrong = ShardSpec(shard.name, cid, Sha256Digest("0" * 64), len(DATA))
    assert verify_file(shard, wrong) == f"sha256 is {sha}, but the manifest says sha256:{'0' * 64}"
    report = PackReport()
    manifest = {"shards": [{"filename": shard.name, "cid": cid, "sha256": str(wrong.sha256), "size": 1}]}
    check_shards(shard.parent, manifest, True, report)
    assert report.failures == [
        f"shard {shard.name}: size is {len(DATA)}, but the manifest says 1",
        f"shard {shard.name}: sha256 is {sha}, but the manifest says sha256:{'0' * 64}",
    ]
