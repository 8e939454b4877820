"""``modelpack keygen / sign / verify DIR`` end to end, with exit codes and one line per failure.

(Lives here rather than under tests/registry/cli/ because it exercises registry/trust through the CLI.)
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from registry.cli.trust_cmd import keygen, sign, verify
from registry.trust.keys import load_public_key
from tests.model_core.behaviour_util import add_files


def run(cmd: object, *args: str) -> Result:
    import click

    assert isinstance(cmd, click.Command)
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    for k in (a, b):
        result = run(keygen, str(k))
        assert result.exit_code == 0, result.output
    return a, b


def write_policy(path: Path, *pubs: Path, required: int = 1) -> Path:
    policy = {
        "version": 1,
        "namespaces": {
            "acme": {"required_signatures": required, "keys": [load_public_key(p).b64 for p in pubs]}
        },
    }
    path.write_text(json.dumps(policy))
    return path


def test_keygen_writes_0600_key_and_prints_its_id(tmp_path: Path) -> None:
    out = tmp_path / "k"
    result = run(keygen, str(out))
    assert result.exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_public_key(tmp_path / "k.pub").key_id in result.output
    again = run(keygen, str(out))
    assert again.exit_code == 1 and "already exists" in again.output


def test_sign_then_verify_passes(pack_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = keys
    assert run(sign, str(pack_dir), "--key", str(a)).exit_code == 0
    policy = write_policy(tmp_path / "p.json", Path(f"{a}.pub"))
    result = run(verify, str(pack_dir), "--trust-policy", str(policy))
    assert result.exit_code == 0, result.output
    assert "OK 2 shard(s) and 0 file(s) verified, 1 trusted signature(s)" in result.output


def test_two_signers_detached_and_dsse(pack_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = keys
    (pack_dir / "signatures").mkdir()
    assert run(sign, str(pack_dir), "--key", str(a), "--dsse").exit_code == 0
    assert (
        run(
            sign,
            str(pack_dir),
            "--key",
            str(b),
            "--dsse",
            "--detached",
            str(pack_dir / "signatures/b.sig.json"),
        ).exit_code
        == 0
    )
    envelope = json.loads((pack_dir / "manifest.dsse.json").read_text())
    assert len(envelope["signatures"]) == 2  # b's envelope signature joined a's
    policy = write_policy(tmp_path / "p.json", Path(f"{a}.pub"), Path(f"{b}.pub"), required=2)
    result = run(verify, str(pack_dir), "--trust-policy", str(policy), "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["ok"], report
    assert {s["source"] for s in report["signatures"]} == {"provenance", "detached:b.sig.json", "dsse"}
    assert len(report["trusted_valid"]) == 2


def test_unsigned_pack_fails_the_policy(pack_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", Path(f"{keys[0]}.pub"))
    result = run(verify, str(pack_dir), "--trust-policy", str(policy))
    assert result.exit_code == 1
    assert "FAIL 0 valid signature(s) by trusted keys; the policy requires 1" in result.output


def test_untrusted_signer_is_a_note_and_not_enough(
    pack_dir: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = keys
    run(sign, str(pack_dir), "--key", str(b))
    result = run(
        verify, str(pack_dir), "--trust-policy", str(write_policy(tmp_path / "p.json", Path(f"{a}.pub")))
    )
    assert result.exit_code == 1
    assert "unknown_key" in result.output and "the policy requires 1" in result.output


def test_edited_manifest_fails_with_the_key_named(
    pack_dir: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = keys
    run(sign, str(pack_dir), "--key", str(a))
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    manifest["model_version"] = "6.6.6"
    (pack_dir / "manifest.json").write_text(json.dumps(manifest))
    result = run(
        verify, str(pack_dir), "--trust-policy", str(write_policy(tmp_path / "p.json", Path(f"{a}.pub")))
    )
    assert result.exit_code == 1
    key_id = load_public_key(Path(f"{a}.pub")).key_id
    assert f"FAIL signature by {key_id} (provenance): bad_signature" in result.output


def test_corrupted_and_missing_shards_each_get_a_line(pack_dir: Path) -> None:
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    first, second = (s["filename"] for s in manifest["shards"])
    with (pack_dir / first).open("r+b") as f:
        f.write(b"\xff")
    (pack_dir / second).unlink()
    result = run(verify, str(pack_dir), "--skip-signatures")
    assert result.exit_code == 1
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert any(first in f and "sha256" in f for f in fails)
    assert any(first in f and "CID is" in f for f in fails)
    assert any(second in f and "missing" in f for f in fails)


def test_the_manifests_other_files_are_verified_too(pack_dir: Path) -> None:
    """config.json, tokenizer.json, README.md...: listed under ``files``, checked like shards."""
    add_files(pack_dir, {"config.json": b'{"model_type": "llama"}', "README.md": b"# a card"})
    result = run(verify, str(pack_dir), "--skip-signatures")
    assert result.exit_code == 0 and "OK 2 shard(s) and 2 file(s) verified" in result.output, result.output
    (pack_dir / "config.json").write_bytes(b'{"model_type": "llamb"}')
    (pack_dir / "README.md").unlink()
    result = run(verify, str(pack_dir), "--skip-signatures")
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert result.exit_code == 1
    assert any(f.startswith("FAIL file config.json:") and "sha256" in f for f in fails), fails
    assert "FAIL file README.md: file is missing" in fails, fails


def test_unsafe_shard_filename_is_refused(pack_dir: Path) -> None:
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    manifest["shards"][0]["filename"] = "../../etc/passwd"
    (pack_dir / "manifest.json").write_text(json.dumps(manifest))
    result = run(verify, str(pack_dir), "--skip-signatures", "--no-cids")
    assert result.exit_code == 1 and "unsafe" in result.output


def test_revoked_key_fails_offline(pack_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = keys
    run(sign, str(pack_dir), "--key", str(a))
    policy = {
        "namespaces": {
            "acme": {
                "keys": [
                    {
                        "public_key": load_public_key(Path(f"{a}.pub")).b64,
                        "revoked_at": "2020-01-01T00:00:00Z",
                    }
                ]
            }
        }
    }
    (tmp_path / "p.json").write_text(json.dumps(policy))
    result = run(verify, str(pack_dir), "--trust-policy", str(tmp_path / "p.json"))
    assert result.exit_code == 1 and "revoked" in result.output


def test_sign_warns_on_loose_key_permissions(pack_dir: Path, keys: tuple[Path, Path]) -> None:
    a, _ = keys
    os.chmod(a, 0o644)
    result = run(sign, str(pack_dir), "--key", str(a))
    assert result.exit_code == 0
    assert "warning: private key file" in result.output and "0644" in result.output


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--trust-policy", "{policy}"], 2, None),
        ([], 2, "--trust-policy"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], code: int, text: str | None) -> None:
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text("{")
    result = run(verify, str(tmp_path), *[a.format(policy=bad_policy) for a in args])
    assert result.exit_code == code
    if text:
        assert text in result.output


def test_verify_of_a_non_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run(verify, "acme/tiny@curated", "--skip-signatures")
    assert result.exit_code == 2 and "not a directory" in result.output


def test_sign_errors_are_one_sentence(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    result = run(sign, str(tmp_path), "--key", str(keys[0]))
    assert result.exit_code == 1 and "manifest.json" in result.output and "Traceback" not in result.output
    result = run(sign, str(tmp_path), "--key", str(tmp_path / "nope"))
    assert result.exit_code == 1 and "cannot read key file" in result.output


def test_offline_chain_from_ipns_record(pack_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from model_core.format.pack import canonical_bytes, pack_cid_of
    from registry.ipns.name import ipns_name
    from registry.ipns.record import make_record
    from registry.trust.keys import generate_private_key, public_key_of
    from registry.verify.packcheck import read_manifest

    a, _ = keys
    run(sign, str(pack_dir), "--key", str(a))
    policy = write_policy(tmp_path / "p.json", Path(f"{a}.pub"))
    channel = generate_private_key()
    name = ipns_name(public_key_of(channel))
    eol = datetime.now(UTC) + timedelta(hours=1)
    good = tmp_path / "good.ipns-record"
    good.write_bytes(
        make_record(channel, f"/ipfs/{pack_cid_of(canonical_bytes(read_manifest(pack_dir)))}", 5, eol, 0)
    )
    base = ["--trust-policy", str(policy), "--ipns-name", name]
    result = run(verify, str(pack_dir), *base, "--ipns-record", str(good), "--seen-sequence", "4")
    assert result.exit_code == 0, result.output
    stale = run(verify, str(pack_dir), *base, "--ipns-record", str(good), "--seen-sequence", "5")
    assert stale.exit_code == 1 and "not higher than 5" in stale.output
    elsewhere = tmp_path / "other.ipns-record"
    elsewhere.write_bytes(make_record(channel, "/ipfs/bafkqaddwgevxmmraojswg33smq", 6, eol, 0))
    result = run(verify, str(pack_dir), *base, "--ipns-record", str(elsewhere))
    assert result.exit_code == 1 and "not this manifest" in result.output
    forged = tmp_path / "forged.ipns-record"
    thief = generate_private_key()
    forged.write_bytes(
        make_record(thief, f"/ipfs/{pack_cid_of(canonical_bytes(read_manifest(pack_dir)))}", 7, eol, 0)
    )
    result = run(verify, str(pack_dir), *base, "--ipns-record", str(forged))
    assert result.exit_code == 1 and "V2 signature does not verify" in result.output
    lonely = run(verify, str(pack_dir), "--trust-policy", str(policy), "--ipns-record", str(good))
    assert lonely.exit_code == 2


@pytest.mark.parametrize("cid", ["bafy...", "QmPlaceholder", ""])
def test_unreadable_shard_cid_is_a_failure_line(pack_dir: Path, cid: str) -> None:
    manifest = json.loads((pack_dir / "manifest.json").read_text())
    manifest["shards"][0]["cid"] = cid
    (pack_dir / "manifest.json").write_text(json.dumps(manifest))
    result = run(verify, str(pack_dir), "--skip-signatures")
    assert result.exit_code == 1 and "cannot check CID" in result.output
