"""Manifest parsing: canonical bytes and pack CID, limits, and every kind of bad input naming its field."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest
import rfc8785

from pinner.unixfs import UnixfsParams, hash_file
from registry.errors import InvalidManifest, ManifestTooLarge
from registry.manifest import ManifestLimits, load_manifest, parse_manifest_bytes
from tests.registry.api import helpers

SHARDS = [("model-00001-of-00001.safetensors", helpers.shard_bytes(1000))]


def base() -> dict[str, Any]:
    return helpers.manifest(SHARDS)


def test_pack_cid_is_the_cidv1_raw_of_the_rfc8785_bytes() -> None:
    m = base()
    m["config"]["rope_theta"] = 10000.0
    parsed = parse_manifest_bytes(json.dumps(m, indent=4).encode())
    assert parsed.canonical == rfc8785.dumps(m)
    assert b'"rope_theta":10000' in parsed.canonical  # JCS number form
    # what `ipfs add --cid-version=1` prints for a file under one chunk
    assert parsed.cid == str(hash_file(io.BytesIO(parsed.canonical), UnixfsParams(cid_version=1)).cid)
    assert parsed.cid.startswith("bafkrei")


def test_key_order_and_whitespace_do_not_change_the_cid() -> None:
    m = base()
    a = parse_manifest_bytes(json.dumps(m).encode())
    b = parse_manifest_bytes(json.dumps(dict(reversed(list(m.items()))), indent=2).encode())
    assert a.cid == b.cid


def test_unknown_top_level_keys_are_kept_and_change_the_cid() -> None:
    m = base()
    plain = parse_manifest_bytes(json.dumps(m).encode())
    m["x-team"] = {"owner": "ml-infra"}
    kept = parse_manifest_bytes(json.dumps(m).encode())
    assert json.loads(kept.canonical)["x-team"] == {"owner": "ml-infra"} and kept.cid != plain.cid


def test_seed_example_without_sizes_and_with_a_profile_parses() -> None:
    m = base()
    del m["shards"][0]["size"]
    m["unixfs"] = "unixfs-v1-2025"
    m["tokenizer"] = {"type": "bpe", "cid": "bafy"}
    m["provenance"] = {"build_ts": "2026-02-14T00:00:00Z", "git_commit": "abc123", "trainer_wallet": "0x"}
    parsed = load_manifest(m)
    assert (
        parsed.doc.shards[0].size is None and parsed.doc.profile_of(parsed.doc.shards[0]) == "unixfs-v1-2025"
    )


def _mutated(path: str, value: Any) -> dict[str, Any]:
    m = copy.deepcopy(base())
    target: Any = m
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    last = keys[-1]
    if isinstance(target, list):
        target[int(last)] = value
    elif value is KeyError:
        del target[last]
    else:
        target[last] = value
    return m


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("format", "pickle", "format 'pickle' is not supported"),
        ("format", KeyError, "format"),
        ("shards.0.filename", "../../etc/passwd", "not allowed"),
        ("shards.0.filename", "a/b", "not allowed"),
        ("shards.0.filename", "", "shards.0.filename"),
        ("shards.0.filename", "a\x00b", "not allowed"),
        ("shards.0.filename", "..", "not allowed"),
        ("shards.0.filename", ".hidden", "not allowed"),
        ("shards.0.cid", "not-a-cid", "not a valid CID"),
        ("shards.0.sha256", "sha256:ABC", "shards.0.sha256"),
        ("shards.0.sha256", "a" * 64, "shards.0.sha256"),
        ("shards.0.size", -1, "shards.0.size"),
        ("shards.0.size", "12", "shards.0.size"),
        ("shards.0.unixfs", "bogus", "unknown unixfs profile"),
        ("shards", [], "shards"),
        ("model_version", 3, "model_version"),
        ("config", [1], "config"),
    ],
)
def test_bad_fields_are_refused_naming_them(path: str, value: Any, needle: str) -> None:
    with pytest.raises(InvalidManifest, match=None) as exc:
        load_manifest(_mutated(path, value))
    assert needle in exc.value.message
    assert exc.value.code == "invalid_manifest"


def test_duplicate_filenames_are_refused() -> None:
    m = base()
    m["shards"].append(dict(m["shards"][0]))
    with pytest.raises(InvalidManifest, match="listed twice"):
        load_manifest(m)


def test_keys_that_collide_with_ours_are_refused() -> None:
    m = base()
    m["Model-Name"] = "shadow"
    with pytest.raises(InvalidManifest, match="collides with the manifest field 'model_name'"):
        load_manifest(m)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"format": "safetensors", "format": "safetensors"}', "appears twice"),
        (b'{"x": NaN}', "NaN is not a JSON number"),
        (b"[1, 2]", "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
    ],
)
def test_bytes_that_are_not_a_json_object_are_refused(raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidManifest) as exc:
        parse_manifest_bytes(raw, ManifestLimits(manifest_max_bytes=1_000_000))
    assert needle in exc.value.message


def test_depth_string_length_size_and_shard_count_limits() -> None:
    m = base()
    m["deep"] = {"a": {"b": {"c": {"d": 1}}}}
    with pytest.raises(InvalidManifest, match="nests deeper than 4"):
        load_manifest(m, ManifestLimits(json_max_depth=4))
    m = base()
    m["license"] = "x" * 5000
    with pytest.raises(InvalidManifest, match="license"):
        load_manifest(m)
    with pytest.raises(ManifestTooLarge):
        parse_manifest_bytes(json.dumps(base()).encode(), ManifestLimits(manifest_max_bytes=100))
    m = base()
    m["shards"] = [dict(m["shards"][0], filename=f"s{i}") for i in range(100_000)]
    with pytest.raises(InvalidManifest, match="100000 shards, more than the limit of 4096"):
        load_manifest(m)
    m = base()
    with pytest.raises(InvalidManifest, match="more than the limit of 10"):
        load_manifest(m, ManifestLimits(pack_max_bytes=10))


def test_integers_outside_i_json_cannot_be_canonicalized() -> None:
    m = base()
    m["config"]["huge"] = 2**60
    with pytest.raises(InvalidManifest, match="RFC 8785"):
        load_manifest(m)
