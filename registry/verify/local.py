"""``modelpack gate DIR``: every check the registry's gate makes, run locally on a pack folder with no registry.

Manifest schema (the registry's own parser), every shard's size, sha256 and UnixFS CID, signatures against
a trust policy file (when given), then the loader and smoke suite in model_core's sandbox. The sandbox starts
beside the shards check (its start-up overlaps the hashing) and is stopped when the bytes do not verify: the
verdict is already known.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_core.format.errors import InvalidManifest
from model_core.format.fields import MANIFEST_NAME
from model_core.format.pack import ParsedManifest, parse_manifest_bytes
from registry.gate.config import SandboxBudget
from registry.gate.runner import SandboxRunner, run_sandbox
from registry.trust.dsse import verify_envelope
from registry.trust.errors import DsseError, TrustError
from registry.trust.policy import NamespacePolicy
from registry.trust.signatures import NoTrustedTime, Verdict, verify_manifest
from registry.verify.checks import GateReport, verdict_kind
from registry.verify.packcheck import (
    DSSE_NAME,
    PackCheckConfig,
    PackReport,
    check_shards,
    detached_in,
)

MANIFEST_MAX_BYTES = 16 * 1024 * 1024
_FAILING = (Verdict.BAD_SIGNATURE, Verdict.REVOKED, Verdict.MALFORMED)


def gate_dir(
    directory: Path,
    policy: NamespacePolicy | None,
    budget: SandboxBudget,
    *,
    run_smoke: bool = True,
    runner: SandboxRunner = run_sandbox,
) -> GateReport:
    report = GateReport(str(directory), "local")
    parsed: ParsedManifest | None = None
    with report.timed("manifest") as done:
        try:
            raw = (directory / MANIFEST_NAME).read_bytes()[: MANIFEST_MAX_BYTES + 1]
            loaded = parse_manifest_bytes(raw)
        except OSError as e:
            done("fail", f"cannot read {directory / MANIFEST_NAME}: {e.strerror}", "invalid")
        except InvalidManifest as e:
            done("fail", f"manifest.json: {e.message}", "invalid")
        else:
            parsed = loaded
            report.cid = loaded.cid
            done("pass", f"schema valid; pack CID {loaded.cid}", cid=loaded.cid)
    if parsed is None:
        return report
    total = sum(s.size or 0 for s in parsed.doc.shards)
    early = run_smoke and budget.fits(total)

    def bytes_and_signatures() -> bool:
        """The shards and signatures checks; True when the shards' bytes verify."""
        assert parsed is not None
        with report.timed("shards") as done:
            shard_report = PackReport()
            check_shards(directory, parsed.data, True, shard_report)
            if shard_report.failures:
                for line in shard_report.failures:
                    done("fail", line, "invalid")
            else:
                done(
                    "pass",
                    f"{shard_report.shards_checked} shard(s) and {shard_report.files_checked} file(s): "
                    "size, sha256 and CID match",
                )
        with report.timed("signatures") as done:
            if policy is None:
                done("skip", "no --trust-policy given: signatures not checked")
            else:
                failures, notes, trusted = _signatures(directory, parsed.data, policy)
                if failures:
                    done("fail", "; ".join(failures + notes), "untrusted", notes=notes)
                else:
                    done(
                        "pass",
                        f"{len(trusted)} trusted valid signature(s): {', '.join(trusted)}",
                        notes=notes,
                    )
        return not shard_report.failures

    started = time.monotonic()
    if early:
        # The sandbox starts first (its interpreter and torch take a while to import) and the shards are
        # hashed here meanwhile; it trusts nothing it did not read itself, and is stopped when they fail.
        sandbox = _run_beside(directory, budget, runner, bytes_and_signatures)
    else:
        bytes_and_signatures()
        sandbox = None
    with report.timed("sandbox", since=started) as done:
        if not run_smoke:
            done("skip", "--no-smoke: the loader and smoke suite were not run")
        elif any(c.name == "shards" and c.status == "fail" for c in report.checks):
            done("skip", "shard bytes did not verify; the sandbox was stopped, no verdict taken from it")
        elif sandbox is None:
            done(
                "fail",
                f"the pack needs about {budget.memory_needed(total)} bytes, more than the budget of "
                f"{budget.memory_bytes} (--memory-bytes)",
                "too_big",
            )
        else:
            checks = (sandbox.get("smoke") or {}).get("checks") or []
            failed = [c for c in checks if isinstance(c, dict) and not c.get("passed", True)]
            if sandbox.get("verdict") == "pass":
                done("pass", str(sandbox.get("reason")), report=sandbox)
            elif failed:  # one line per failed smoke check
                for c in failed:
                    done("fail", str(c.get("reason")), verdict_kind(sandbox), sub=str(c.get("name")))
                done(
                    "fail",
                    f"{sandbox.get('verdict')}: {len(failed)} smoke check(s) failed",
                    verdict_kind(sandbox),
                    report=sandbox,
                )
            else:
                done(
                    "fail",
                    f"{sandbox.get('verdict')}: {sandbox.get('reason')}",
                    verdict_kind(sandbox),
                    report=sandbox,
                )
    return report


def _run_beside(
    directory: Path, budget: SandboxBudget, runner: SandboxRunner, checks: Callable[[], bool]
) -> dict[str, Any] | None:
    """The sandbox's report, run while ``checks`` runs in a thread; None (the sandbox killed) when they fail."""

    pack_dir = directory.resolve()

    async def both(report_path: Path) -> dict[str, Any] | None:
        task = asyncio.create_task(runner(pack_dir, report_path, budget, ()))
        try:
            ok = await asyncio.to_thread(checks)
        except BaseException:
            task.cancel()  # run_sandbox kills its process group when cancelled
            await asyncio.gather(task, return_exceptions=True)
            raise
        if not ok:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return await task

    with tempfile.TemporaryDirectory(prefix="modelpack-gate-") as tmp:
        return asyncio.run(both(Path(tmp) / "report.json"))


def _signatures(
    directory: Path, manifest: dict[str, Any], policy: NamespacePolicy
) -> tuple[list[str], list[str], tuple[str, ...]]:
    failures: list[str] = []
    notes: list[str] = []
    keys = policy.keyring()
    offline = NoTrustedTime()
    config = PackCheckConfig()
    try:
        checks = verify_manifest(
            manifest,
            keys,
            detached=detached_in(directory, (), config.detached_max_bytes),
            signing_time=offline,
        )
    except TrustError as e:
        return [e.message], notes, ()
    dsse_path = directory / DSSE_NAME
    if dsse_path.is_file():
        try:
            env = verify_envelope(
                dsse_path.read_bytes()[: config.dsse_max_bytes + 1], manifest, keys, offline
            )
            checks.extend(env.signatures)
            failures.extend(env.mismatches)
        except DsseError as e:
            failures.append(f"{DSSE_NAME}: {e.message}")
    if not checks:
        failures.append("the pack carries no signatures")
    for c in checks:
        if c.verdict is Verdict.VALID:
            continue
        line = f"signature by {c.key_id or '(no key id)'} ({c.source}): {c.verdict.value}: {c.reason}"
        (failures if c.verdict in _FAILING else notes).append(line)
    decision = policy.evaluate(checks)
    failures.extend(decision.reasons)
    return failures, notes, decision.trusted_valid
