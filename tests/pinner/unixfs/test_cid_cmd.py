"""``modelpack cid`` (registry/cli/cid_cmd.py) through click's CliRunner.

Lives here because tests/registry/cli/ is not this component's path yet; move it there when it exists.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.app.main import cli

VECTORS = Path(__file__).parents[2] / "conformance" / "unixfs"
DOC = json.loads((VECTORS / "vectors.json").read_text())


def _run(*args: str, stdin: bytes | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["cid", *args], input=stdin)


@pytest.mark.parametrize("case", [c for c in DOC["files"] if "data_utf8" in c], ids=lambda c: c["cid"])
def test_vectors_from_a_file_and_stdin(tmp_path: Path, case: dict[str, object]) -> None:
    data = str(case["data_utf8"]).encode()
    path = tmp_path / "f"
    path.write_bytes(data)
    version = str(case["cid_version"])
    for result in (
        _run("--cid-version", version, str(path)),
        _run("--cid-version", version, "-", stdin=data),
    ):
        assert result.exit_code == 0, result.output
        assert result.output.strip() == case["cid"]


def test_sha256_flag_prints_both(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello world\n")
    result = _run("--sha256", str(path))
    assert result.exit_code == 0
    assert result.output.split() == [
        "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
        hashlib.sha256(b"hello world\n").hexdigest(),
    ]


def test_folder_gives_the_directory_cid() -> None:
    case = DOC["directories"][0]
    result = _run("--cid-version", "1", str(VECTORS / case["path"]))
    assert result.output.strip() == case["cid_version_1"]


def test_explicit_flags_override_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"\0" * 262145)
    profiled = _run("--profile", "unixfs-v1-2025", str(path)).output.strip()
    assert profiled.startswith("bafk")  # one 1 MiB chunk: a raw leaf is the root
    overridden = _run(
        "--profile", "unixfs-v1-2025", "--chunk-size", "262144", "--max-links", "174", str(path)
    )
    assert overridden.output.strip() == "bafybeigllfqgfpqydppr6cmv56g7ax4wyhruzswvcefv6j5kj77nzttfki"
    v0 = _run("--profile", "unixfs-v1-2025", "--cid-version", "0", "--chunk-size", "262144", str(path))
    assert v0.output.strip().startswith("Qm")


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--chunk-size", "0"], 1, "chunk_size"),
        (["--chunk-size", str(2 * 1024 * 1024 - 255)], 1, "chunk_size"),
        (["--max-links", "1"], 1, "max_links"),
        (["--cid-version", "2"], 2, "cid-version"),
        (["--profile", "nope"], 2, "profile"),
    ],
)
def test_bad_values_are_one_sentence(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    result = _run(*args, str(path))
    assert result.exit_code == code
    assert text in result.output
    assert "Traceback" not in result.output


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert "does not exist" in result.output
