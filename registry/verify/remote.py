"""``modelpack gate NS/MODEL@TAG|CID`` (against the registry): the registry's verdict, re-checked where it can be.

The manifest bytes are fetched and re-hashed against the pack CID and re-parsed; signatures are
re-verified here against the namespace's policy (``--trust-policy FILE``, else the registry's own policy
file); the validation state and the replica counts are the registry's word.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from model_core.format.errors import InvalidManifest
from model_core.format.pack import ParsedManifest, parse_manifest_bytes
from registry.client import ClientError, RegistryClient
from registry.errors import RegistryError
from registry.names import parse_ref
from registry.trust.errors import TrustError
from registry.trust.policy import NamespacePolicy, parse_policy
from registry.trust.signatures import ManifestSignature, RecordedReceiptTimes, Verdict, verify_manifest
from registry.verify.checks import EXIT_CODES, GateReport, verdict_kind

Require = Literal["validated", "curated"]
_FAILING = (Verdict.BAD_SIGNATURE, Verdict.REVOKED, Verdict.MALFORMED)


_FLAG = re.compile(r"^degraded \((\w+)\): ")


def flagged_kind(flagged: object) -> str | None:
    """The failure kind of a pack the gate flagged (``degraded (KIND): ...``); an admin's flag is not_ready."""
    if not isinstance(flagged, str) or not flagged:
        return None
    m = _FLAG.match(flagged)
    return m.group(1) if m and m.group(1) in EXIT_CODES else "not_ready"


def failure_kind(e: ClientError) -> str:
    if e.status == 404:
        return "not_found"
    if e.status == 0 or e.status >= 500:
        return "unreachable"
    return "invalid"


def resolve_target(client: RegistryClient, target: str) -> str:
    """A pack CID from ``ns/model[@tag]`` (default tag ``latest``) or a CID. Raises ClientError/RegistryError."""
    ref = parse_ref(target)
    if ref.cid is not None:
        return ref.cid
    assert ref.model is not None
    cid: str = client.resolve(str(ref.model), ref.tag)["cid"]
    return cid


def target_model(target: str) -> str | None:
    """``ns/model`` of a ``ns/model[@tag]`` target (which listing of the CID it means), None for a CID."""
    ref = parse_ref(target)
    return None if ref.model is None else str(ref.model)


def gate_remote(
    client: RegistryClient,
    target: str,
    *,
    require: Require = "validated",
    min_replicas: int | None = None,
    policy_file: Path | None = None,
    policy: NamespacePolicy | None = None,
) -> GateReport:
    report = GateReport(target, "registry")
    with report.timed("resolve") as done:
        try:
            cid = resolve_target(client, target)
        except ClientError as e:
            done("fail", e.message, failure_kind(e))
            return report
        except RegistryError as e:
            done("fail", f"{target!r}: {e.message}", "not_found")
            return report
        report.cid = cid
        done("pass", f"{target} -> {cid}", cid=cid)
    parsed = _manifest_check(client, cid, report)
    if parsed is None:
        return report
    model = target_model(target)  # a ns/model target means that model's listing of the CID
    _state_check(client, cid, require, report, model)
    _signature_check(client, cid, parsed, policy, policy_file, report, model)
    _replication_check(client, cid, min_replicas, report)
    return report


def _manifest_check(client: RegistryClient, cid: str, report: GateReport) -> ParsedManifest | None:
    with report.timed("manifest") as done:
        try:
            raw = client.manifest_bytes(cid)
            parsed = parse_manifest_bytes(raw)
        except ClientError as e:
            done("fail", e.message, failure_kind(e))
            return None
        except InvalidManifest as e:
            done("fail", f"the registry's manifest for {cid} does not parse: {e.message}", "invalid")
            return None
        if parsed.cid != cid or parsed.canonical != raw:
            done("fail", f"the manifest bytes served for {cid} hash to {parsed.cid}", "invalid")
            return None
        done("pass", f"manifest bytes hash to {cid}; schema valid; {len(parsed.doc.shards)} shard(s)")
        return parsed


def _state_check(
    client: RegistryClient, cid: str, require: Require, report: GateReport, model: str | None = None
) -> None:
    with report.timed("registry_state") as done:
        try:
            v = client.validation(cid, model=model)
        except ClientError as e:
            done("fail", e.message, failure_kind(e))
            return
        state = v.get("state")
        run = v.get("validation") or {}
        verdict = run.get("verdict")
        details = {"state": state, "state_reason": v.get("state_reason"), "flagged": v.get("flagged")}
        if state == "rejected":
            full = run.get("report") or {"verdict": verdict}
            done("fail", f"rejected: {v.get('state_reason')}", verdict_kind(full), **details)
        elif flagged_kind(v.get("flagged")) and (state == "curated" or require == "curated"):
            done("fail", f"{state}, flagged: {v.get('flagged')}", flagged_kind(v.get("flagged")), **details)
        elif state == "curated" or (state == "validated" and require == "validated"):
            done("pass", f"{state}: {v.get('state_reason')}", **details)
        elif state == "validated":
            done("fail", f"validated but not curated: {v.get('state_reason')}", "not_ready", **details)
        else:
            pending = "validation running" if verdict == "running" else "validation pending"
            done("fail", f"{state} ({pending}); --require {require}", "not_ready", **details)


def _signature_check(
    client: RegistryClient,
    cid: str,
    parsed: ParsedManifest,
    policy: NamespacePolicy | None,
    policy_file: Path | None,
    report: GateReport,
    model: str | None = None,
) -> None:
    with report.timed("signatures") as done:
        try:
            trust = client.trust(cid, model=model)
            source = str(policy_file) if policy is not None else "the registry's policy"
            if policy is None:
                policy = parse_policy(client.policy_file(trust["namespace"])).for_namespace(
                    trust["namespace"]
                )
        except ClientError as e:
            done("fail", e.message, failure_kind(e))
            return
        except TrustError as e:
            done("fail", f"the namespace's trust policy does not parse: {e.message}", "untrusted")
            return
        if policy is None:
            done("fail", f"no trust policy for namespace {trust.get('namespace')!r}", "untrusted")
            return
        detached, times = _registry_signatures(trust)
        checks = verify_manifest(
            parsed.data, policy.keyring(), detached=detached, signing_time=RecordedReceiptTimes(times)
        )
        failures = [
            f"signature by {c.key_id} ({c.source}): {c.verdict.value}: {c.reason}"
            for c in checks
            if c.verdict in _FAILING
        ]
        if not checks:
            failures.append("the pack carries no signatures")
        decision = policy.evaluate(checks)
        failures.extend(decision.reasons)
        if failures:
            done("fail", "; ".join(failures), "untrusted", policy=source)
        else:
            done("pass", f"re-verified here against {source}: trusted {', '.join(decision.trusted_valid)}")


def _registry_signatures(
    trust: dict[str, Any],
) -> tuple[list[ManifestSignature], dict[tuple[str, bytes], datetime]]:
    """Detached signatures the registry stored (embedded ones are in the manifest) and receipt times."""
    detached: list[ManifestSignature] = []
    times: dict[tuple[str, bytes], datetime] = {}
    for j in trust.get("signatures") or []:
        try:
            sig = base64.b64decode(j["signature"], validate=True)
            at = datetime.fromisoformat(j["received_at"])
        except (KeyError, ValueError, binascii.Error, TypeError):
            continue
        times[(j["key_id"], sig)] = at
        if j.get("kind") == "detached":
            detached.append(ManifestSignature(j["key_id"], sig, source="detached:registry"))
    return detached, times


def _replication_check(
    client: RegistryClient, cid: str, min_replicas: int | None, report: GateReport
) -> None:
    with report.timed("replication") as done:
        try:
            m = client.replicas(cid)
        except ClientError as e:
            done("fail", e.message, failure_kind(e))
            return
        units = m.get("units") or []
        lowest = min((int(u.get("pinned", 0)) for u in units), default=0)
        if min_replicas is None:
            if m.get("satisfied"):
                done("pass", f"registry says replicated (every unit on >= {lowest} node(s))")
            else:
                short = [u.get("name") for u in units if not u.get("satisfied")]
                done(
                    "fail",
                    f"{len(short)} unit(s) below replication_min (e.g. {short[:1]})",
                    "under_replicated",
                )
            return
        if m.get("embedded_only"):
            have = 1
            where = "the registry's embedded blockstore only"
        else:
            have = lowest
            where = f"every unit on >= {lowest} node(s)"
        if have >= min_replicas:
            done("pass", f"{where}; --min-replicas {min_replicas}")
        else:
            done("fail", f"{where}, fewer than --min-replicas {min_replicas}", "under_replicated")


def dumps(report: GateReport) -> str:
    return json.dumps(report.to_json(), indent=2, default=str)
