"""``modelpack gate DIR``: each defect of issue #8 gives its own exit code and one line naming the problem."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.cli.gate_cmd import gate
from registry.gate.config import SandboxBudget
from registry.verify.checks import EXIT_CODES
from registry.verify.local import gate_dir
from tests.registry.gate import packs


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, key: Ed25519PrivateKey) -> Path:
    pack = packs.make_pack(tmp_path_factory.mktemp("good") / "pack")
    packs.sign(pack, key)
    return pack


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(gate, list(args))
    return result.exit_code, result.output


def test_a_good_signed_pack_passes_every_check_and_writes_junit(
    good: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    policy = packs.policy_file(tmp_path / "policy.json", key)
    junit = tmp_path / "gate.xml"
    code, out = run(str(good), "--trust-policy", str(policy), "--junit", str(junit))
    assert code == 0, out
    assert out.startswith("PASS") and "FAIL" not in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    names = [c.get("name") for c in suite.findall("testcase")]
    assert names == ["manifest", "shards", "signatures", "sandbox"]


def test_json_report_carries_every_check_and_the_sandbox_report(good: Path) -> None:
    code, out = run(str(good), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] and doc["exit_code"] == 0 and doc["mode"] == "local"
    sandbox = next(c for c in doc["checks"] if c["name"] == "sandbox")
    assert sandbox["details"]["report"]["verdict"] == "pass"
    assert next(c for c in doc["checks"] if c["name"] == "signatures")["status"] == "skip"


@pytest.mark.parametrize(
    ("defect", "kind", "words"),
    [
        ("flip", "invalid", "sha256"),
        ("nan", "smoke_failed", "finite"),
        ("shape", "invalid", "shape"),
        ("config", "invalid", ""),
    ],
)
def test_each_defect_fails_with_its_exit_code(tmp_path: Path, defect: str, kind: str, words: str) -> None:
    pack = packs.make_pack(tmp_path / "pack", defect=defect)
    junit = tmp_path / "gate.xml"
    code, out = run(str(pack), "--junit", str(junit))
    assert code == EXIT_CODES[kind], out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fails and words in " ".join(fails).lower()
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and failure.get("type") == kind


def test_flipped_byte_skips_the_sandbox(tmp_path: Path) -> None:
    pack = packs.make_pack(tmp_path / "pack", defect="flip")
    report = gate_dir(pack, None, SandboxBudget())
    sandbox = next(c for c in report.checks if c.name == "sandbox")
    assert sandbox.status == "skip" and report.exit_code == EXIT_CODES["invalid"]


def test_unsigned_pack_is_untrusted(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    pack = packs.make_pack(tmp_path / "pack")
    policy = packs.policy_file(tmp_path / "policy.json", key)
    code, out = run(str(pack), "--trust-policy", str(policy), "--no-smoke")
    assert code == EXIT_CODES["untrusted"], out
    assert "no signatures" in out


def test_pack_signed_by_an_untrusted_key_is_untrusted(good: Path, tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate()
    policy = packs.policy_file(tmp_path / "policy.json", other)
    code, out = run(str(good), "--trust-policy", str(policy), "--no-smoke")
    assert code == EXIT_CODES["untrusted"], out
    assert "unknown_key" in out


def test_pack_too_big_for_the_budget_is_refused_before_loading(good: Path) -> None:
    code, out = run(str(good), "--memory-bytes", "1000000")
    assert code == EXIT_CODES["too_big"], out
    assert "budget" in out


def test_a_missing_manifest_is_invalid_and_a_bad_target_is_a_usage_error(tmp_path: Path) -> None:
    code, out = run(str(tmp_path))
    assert code == EXIT_CODES["invalid"] and "manifest.json" in out
    code, out = run("not a ref at all")
    assert code == 2


class _HeldSandbox:
    """A sandbox that reports what it was given, or waits until it is cancelled."""

    def __init__(self, verdict: dict[str, object] | None) -> None:
        self.verdict = verdict
        self.started = self.cancelled = False

    async def __call__(self, pack_dir: Path, report_path: Path, budget: SandboxBudget, roots: object) -> dict:
        self.started = True
        if self.verdict is not None:
            return self.verdict
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("unreachable")


def test_the_sandbox_starts_beside_the_shards_check_and_is_stopped_when_bytes_fail(tmp_path: Path) -> None:
    pack = packs.make_pack(tmp_path / "pack", defect="flip")
    held = _HeldSandbox(None)
    report = gate_dir(pack, None, SandboxBudget(), runner=held)
    assert held.started and held.cancelled  # started before the verdict on the bytes, stopped by it
    sandbox = next(c for c in report.checks if c.name == "sandbox")
    assert sandbox.status == "skip" and "stopped" in sandbox.message
    assert report.exit_code == EXIT_CODES["invalid"]


def test_the_sandbox_verdict_counts_once_the_bytes_verify(good: Path) -> None:
    held = _HeldSandbox({"verdict": "pass", "reason": "loaded; 9 smoke checks passed"})
    report = gate_dir(good, None, SandboxBudget(), runner=held)
    assert [c.name for c in report.checks] == ["manifest", "shards", "signatures", "sandbox"]
    assert report.exit_code == 0 and report.checks[-1].message == "loaded; 9 smoke checks passed"
