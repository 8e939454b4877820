"""The ModelPack format (model_core.format): canonical bytes and pack CID, limits, every kind of bad input
naming its field, the sha256 value type, and the rules the registry and the loader share."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
import subprocess
import sys
from typing import Any

import pytest
import rfc8785
from multiformats import CID, multihash

from model_core.errors import PackInvalid
from model_core.format.digest import Sha256Digest
from model_core.format.errors import InvalidManifest, ManifestTooLarge
from model_core.format.fields import UNIXFS_PROFILES, check_shard_cid, check_shard_filename
from model_core.format.pack import (
    ManifestLimits,
    canonical_bytes,
    load_manifest,
    pack_cid_of,
    parse_manifest_bytes,
)
from model_core.manifest import parse_manifest
from pinner.cids import parse_cid
from pinner.content_errors import InvalidCid
from pinner.unixfs import PROFILES, UnixfsParams, hash_file

SHARD = random.Random(0).randbytes(1000)
SHARDS = [("model-00001-of-00001.safetensors", SHARD)]


def base() -> dict[str, Any]:
    return {
        "format": "safetensors",
        "model_name": "tiny-llm",
        "model_version": "1.0.0",
        "config": {"vocab_size": 256, "d_model": 64, "dropout": 0.0},
        "shards": [
            {
                "filename": name,
                "cid": str(hash_file(io.BytesIO(data)).cid),
                "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
            for name, data in SHARDS
        ],
    }


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
        ("shards.0.filename", "manifest.json", "is reserved"),
        ("shards.0.filename", "Manifest.JSON", "is reserved"),
        ("shards.0.filename", "signatures", "is reserved"),
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


# --------------------------------------------------------------------------- one vocabulary


def test_importing_the_format_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import model_core.format.pack, model_core.format.schema, model_core.format.digest\n"
        "import model_core.format.fields, model_core.format.strict_json, model_core.format.errors\n"
        "import model_core.manifest\n"
        "heavy = sorted(m for m in ('torch', 'safetensors', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


def test_pack_cid_of_matches_canonical_bytes_of_a_decoded_manifest() -> None:
    m = base()
    parsed = load_manifest(m)
    assert canonical_bytes(m) == parsed.canonical and pack_cid_of(parsed.canonical) == parsed.cid


def test_sha256_digest_value_type() -> None:
    hexd = hashlib.sha256(b"x").hexdigest()
    d = Sha256Digest.parse("sha256:" + hexd)
    assert d.hex == hexd and str(d) == "sha256:" + hexd
    assert d == Sha256Digest(hexd) == Sha256Digest.of_bytes(hashlib.sha256(b"x").digest())
    assert hash(d) == hash(Sha256Digest(hexd)) and d != Sha256Digest("0" * 64)
    assert d.matches(hexd) and not d.matches("0" * 64)
    for bad in (hexd, "sha256:" + hexd.upper(), "sha256:" + hexd[:-1], "md5:abc", None, 7):
        with pytest.raises(ValueError):
            Sha256Digest.parse(bad)
    with pytest.raises(ValueError):
        Sha256Digest(hexd.upper())
    with pytest.raises(AttributeError):
        d.hex = "0" * 64


def test_unixfs_profile_names_are_pinners() -> None:
    assert set(UNIXFS_PROFILES) == set(PROFILES)


@pytest.mark.parametrize(
    "text",
    [
        str(hash_file(io.BytesIO(SHARD)).cid),
        str(hash_file(io.BytesIO(SHARD), UnixfsParams(cid_version=1, raw_leaves=True)).cid),
        str(CID("base58btc", 1, "raw", multihash.digest(b"x", "sha2-256"))),
        str(CID("base32", 1, "dag-cbor", multihash.digest(b"x", "sha2-256"))),
        str(CID("base32", 1, "raw", multihash.digest(b"x", "sha2-512"))),
        "not-a-cid",
        "",
    ],
)
def test_the_format_accepts_exactly_the_cids_pinner_verifies(text: str) -> None:
    try:
        parse_cid(text)
        pinner_ok = True
    except InvalidCid:
        pinner_ok = False
    try:
        check_shard_cid(text)
        format_ok = True
    except ValueError:
        format_ok = False
    assert format_ok == pinner_ok


@pytest.mark.parametrize(
    "name", ["../model.safetensors", "/etc/passwd", "sub/x.safetensors", ".hidden", "..", "a b", "a\x00b", ""]
)
def test_one_safe_filename_rule_for_the_schema_and_the_loader(name: str) -> None:
    with pytest.raises(ValueError):
        check_shard_filename(name)
    m = base()
    m["shards"][0]["filename"] = name
    with pytest.raises(InvalidManifest, match=r"shards\.0\.filename"):
        load_manifest(m)
    with pytest.raises(PackInvalid):
        parse_manifest(json.dumps(m).encode())


def test_the_loader_parses_as_strictly_as_a_publish() -> None:
    raw = json.dumps(base()).encode()
    dup = raw[:-1] + b', "license": "MIT", "license": "MIT"}'
    with pytest.raises(InvalidManifest, match="appears twice"):
        parse_manifest_bytes(dup)
    with pytest.raises(PackInvalid, match="appears twice"):
        parse_manifest(dup)
    with pytest.raises(PackInvalid, match="NaN is not a JSON number"):
        parse_manifest(raw[:-1] + b', "x": NaN}')
    assert parse_manifest(raw).shards[0].sha256_hex == load_manifest(base()).doc.shards[0].digest.hex
