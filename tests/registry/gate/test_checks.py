"""Gate reports: exit code per failure kind (with a fixed precedence), human lines, JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from registry.verify.checks import EXIT_CODES, PRECEDENCE, Check, GateReport, junit_xml, verdict_kind


def report(*checks: Check) -> GateReport:
    r = GateReport("acme/tiny@curated", "registry")
    for c in checks:
        r.add(c)
    return r


def test_every_kind_has_a_distinct_non_zero_code_and_a_rank() -> None:
    assert set(PRECEDENCE) == set(EXIT_CODES)
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES) and 0 not in EXIT_CODES.values()


def test_the_most_fundamental_failure_decides_the_exit_code() -> None:
    r = report(
        Check("replication", "fail", "1 unit short", "under_replicated"),
        Check("signatures", "fail", "no signatures", "untrusted"),
        Check("manifest", "pass", "ok"),
    )
    assert r.kind == "untrusted" and r.exit_code == 12
    assert report(Check("a", "pass", "ok"), Check("b", "skip", "no policy")).exit_code == 0


def test_one_line_per_failing_check() -> None:
    r = report(Check("shards", "fail", "sha256 differs", "invalid"), Check("sandbox", "skip", "bytes bad"))
    assert r.lines() == ["FAIL shards: sha256 differs", "gate failed: invalid (exit 10)"]
    ok = report(Check("manifest", "pass", "fine"), Check("signatures", "skip", "none"))
    assert ok.lines() == ["PASS acme/tiny@curated: 1 check(s) passed (signatures skipped)"]


def test_junit_xml_shows_failures_and_skips() -> None:
    r = report(
        Check("manifest", "pass", "fine", seconds=0.5),
        Check("signatures", "fail", "untrusted <key>", "untrusted"),
        Check("sandbox", "skip", "no smoke"),
    )
    root = ET.fromstring(junit_xml(r))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = suite.find("testcase[@name='signatures']/failure")
    assert (
        failure is not None
        and failure.get("message") == "untrusted <key>"
        and failure.get("type") == "untrusted"
    )
    assert suite.find("testcase[@name='sandbox']/skipped") is not None


def test_sandbox_verdicts_map_to_gate_kinds() -> None:
    assert verdict_kind({"verdict": "invalid_pack"}) == "invalid"
    assert verdict_kind({"verdict": "invalid_pack", "error_code": "pack_too_large"}) == "too_big"
    for v in ("smoke_failed", "out_of_memory", "timed_out", "crashed"):
        assert verdict_kind({"verdict": v}) == "smoke_failed"


def test_a_flag_names_its_failure_kind() -> None:
    from registry.verify.remote import flagged_kind

    assert (
        flagged_kind("degraded (under_replicated): 1 of 5 unit(s) below replication_min 3")
        == "under_replicated"
    )
    assert flagged_kind("degraded (untrusted): key revoked") == "untrusted"
    assert flagged_kind("un-curated: by root: bad outputs") == "not_ready"
    assert flagged_kind(None) is None and flagged_kind("") is None
