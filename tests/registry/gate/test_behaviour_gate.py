"""``modelpack gate DIR`` on a pack whose manifest declares ``evaluation`` (issue #13): exit 18 when it fails."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from registry.cli.gate_cmd import gate
from registry.verify.checks import EXIT_CODES, PRECEDENCE, verdict_kind
from tests.model_core.behaviour_util import own_continuation, set_evaluation
from tests.registry.gate import packs

PROMPT = [1, 2, 3, 4]


def _pack_expecting(tmp_path: Path, *, right: bool) -> Path:
    pack = packs.make_pack(tmp_path / "pack")
    produced = own_continuation(pack, PROMPT, 4)
    expect = produced if right else [(t + 1) % 200 for t in produced]
    set_evaluation(pack, {"prompts": [{"name": "counting", "token_ids": PROMPT, "expect": expect}]})
    return pack


def test_a_pack_whose_evaluation_holds_passes(tmp_path: Path) -> None:
    result = CliRunner().invoke(gate, [str(_pack_expecting(tmp_path, right=True)), "--json"])
    doc = json.loads(result.output)
    assert result.exit_code == 0, result.output
    report = next(c for c in doc["checks"] if c["name"] == "sandbox")["details"]["report"]
    assert report["verdict"] == "pass" and report["behaviour"]["passed"] is True
    assert report["fingerprint"]["scheme"] == "probe-v1"


def test_a_pack_that_misbehaves_fails_with_exit_18_naming_the_prompt(tmp_path: Path) -> None:
    result = CliRunner().invoke(gate, [str(_pack_expecting(tmp_path, right=False))])
    assert result.exit_code == EXIT_CODES["behavior_failed"] == 18, result.output
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and "counting" in fails[0] and "expected" in fails[0]


def test_behaviour_ranks_after_smoke_and_before_trust() -> None:
    assert verdict_kind({"verdict": "behavior_failed"}) == "behavior_failed"
    assert (
        PRECEDENCE.index("smoke_failed") < PRECEDENCE.index("behavior_failed") < PRECEDENCE.index("untrusted")
    )
