"""What ``modelpack gate`` reports: one result per check, the exit code per failure kind, JUnit XML.

Exit codes (stable; documented in ``modelpack gate --help`` and the README):

====  ================  ===========================================================================
code  kind              meaning
====  ================  ===========================================================================
0     -                 every check passed
2     usage             bad command line (click)
10    invalid           manifest schema, shard bytes (sha256/CID/size), safetensors structure or
                        tensors that disagree with the config
11    smoke_failed      the model loaded but a smoke check failed, or the sandbox ran out of memory,
                        time, or crashed
12    untrusted         signatures missing, invalid, revoked, or fewer trusted ones than required
13    under_replicated  fewer pinned copies than required
14    not_found         no such pack, model or pointer
15    unreachable       the registry could not be reached or answered garbage
16    too_big           the pack does not fit the validation memory budget
17    not_ready         the registry has not reached the required state yet (validation pending,
                        or validated but not curated)
18    behavior_failed   the model loaded and passed the smoke suite, but a behavioural check of the
                        manifest's ``evaluation`` failed (a reference prompt's continuation or the
                        perplexity ceiling)
====  ================  ===========================================================================

When several checks fail, the code of the first kind in this order wins: unreachable, not_found,
invalid, too_big, smoke_failed, behavior_failed, untrusted, under_replicated, not_ready.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

EXIT_CODES: dict[str, int] = {
    "invalid": 10,
    "smoke_failed": 11,
    "untrusted": 12,
    "under_replicated": 13,
    "not_found": 14,
    "unreachable": 15,
    "too_big": 16,
    "not_ready": 17,
    "behavior_failed": 18,
}
PRECEDENCE = (
    "unreachable",
    "not_found",
    "invalid",
    "too_big",
    "smoke_failed",
    "behavior_failed",
    "untrusted",
    "under_replicated",
    "not_ready",
)
# model_core's sandbox verdicts -> the gate's failure kind
VERDICT_KINDS = {
    "invalid_pack": "invalid",
    "smoke_failed": "smoke_failed",
    "behavior_failed": "behavior_failed",
    "out_of_memory": "smoke_failed",
    "timed_out": "smoke_failed",
    "crashed": "smoke_failed",
}

Status = Literal["pass", "fail", "skip"]


def verdict_kind(report: dict[str, Any]) -> str:
    if report.get("error_code") == "pack_too_large":
        return "too_big"
    return VERDICT_KINDS.get(str(report.get("verdict")), "smoke_failed")


@dataclass
class Check:
    name: str
    status: Status
    message: str
    kind: str | None = None  # failure kind (a key of EXIT_CODES) when status == "fail"
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "kind": self.kind,
            "message": self.message,
            "seconds": round(self.seconds, 4),
            "details": self.details,
        }


@dataclass
class GateReport:
    target: str
    mode: Literal["local", "registry"]
    checks: list[Check] = field(default_factory=list)
    cid: str | None = None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def kind(self) -> str | None:
        kinds = {c.kind or "invalid" for c in self.failures}
        return next((k for k in PRECEDENCE if k in kinds), None)

    @property
    def exit_code(self) -> int:
        return 0 if self.kind is None else EXIT_CODES[self.kind]

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @contextmanager
    def timed(self, name: str, since: float | None = None) -> Iterator[Callable[..., Check]]:
        """``with report.timed("x") as done: ... done("pass", "msg")`` records the check with its time (from
        ``since``, a ``time.monotonic()``, when the work began before the block).

        ``done(..., sub="y")`` records a sub-check ``x.y`` (e.g. one line per failed smoke check).
        """
        start = time.monotonic() if since is None else since
        made: list[Check] = []

        def done(
            status: Status, message: str, kind: str | None = None, *, sub: str | None = None, **details: Any
        ) -> Check:
            full = f"{name}.{sub}" if sub else name
            c = Check(full, status, message, kind if status == "fail" else None, 0.0, details)
            made.append(c)
            return c

        yield done
        for c in made:
            c.seconds = time.monotonic() - start
            self.add(c)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": self.mode,
            "cid": self.cid,
            "ok": self.ok,
            "kind": self.kind,
            "exit_code": self.exit_code,
            "checks": [c.to_json() for c in self.checks],
        }

    def lines(self) -> list[str]:
        """One human line per failing check, then a verdict line."""
        out = [f"FAIL {c.name}: {c.message}" for c in self.failures]
        if self.ok:
            passed = sum(1 for c in self.checks if c.status == "pass")
            skipped = [c.name for c in self.checks if c.status == "skip"]
            tail = f" ({', '.join(skipped)} skipped)" if skipped else ""
            out.append(f"PASS {self.target}: {passed} check(s) passed{tail}")
        else:
            out.append(f"gate failed: {self.kind} (exit {self.exit_code})")
        return out


def junit_xml(report: GateReport) -> bytes:
    """JUnit XML: one test case per check, failures and skips as CI systems render them."""
    suite = ET.Element(
        "testsuite",
        name=f"modelpack gate {report.target}",
        tests=str(len(report.checks)),
        failures=str(len(report.failures)),
        errors="0",
        skipped=str(sum(1 for c in report.checks if c.status == "skip")),
        time=f"{sum(c.seconds for c in report.checks):.3f}",
    )
    for c in report.checks:
        case = ET.SubElement(
            suite, "testcase", classname=f"modelpack.gate.{report.mode}", name=c.name, time=f"{c.seconds:.3f}"
        )
        if c.status == "fail":
            el = ET.SubElement(case, "failure", message=c.message, type=c.kind or "invalid")
            el.text = c.message
        elif c.status == "skip":
            ET.SubElement(case, "skipped", message=c.message)
        else:
            ET.SubElement(case, "system-out").text = c.message
    root = ET.Element("testsuites", name="modelpack gate")
    root.append(suite)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"
