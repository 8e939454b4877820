"""``modelpack validate|curate|gate``: ask the registry's gate for a verdict, curate by hand, gate a release.

``gate`` is what a CI job runs: exit 0 only when the pack passes, else a documented code per kind of
failure (see ``registry.verify.checks``), one line per failing check, ``--json`` and ``--junit FILE``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from registry.cli.options import connect, remote_options
from registry.cli.output import errors, print_json
from registry.client import RegistryClient
from registry.errors import RegistryError
from registry.verify.checks import EXIT_CODES

_PENDING = (EXIT_CODES["not_found"], EXIT_CODES["not_ready"])  # what gate --wait waits out

GATE_EPILOG = """\b
Exit codes:
  0   the pack passed every check
  2   usage error
  10  invalid pack (manifest, shard bytes, safetensors structure, config vs tensors)
  11  smoke test failed (or the sandbox ran out of memory/time, or crashed)
  12  untrusted (signatures missing, invalid, revoked, or too few trusted)
  13  under-replicated
  14  not found (pack, model or pointer)
  15  registry unreachable
  16  too big for the validation memory budget
  17  not ready (validation pending, or validated but not curated with --require curated)
  18  behaviour failed (a reference prompt or the perplexity ceiling of the manifest's evaluation)
"""


_registry_options = remote_options(with_json=False)


def _cid_of(client: RegistryClient, target: str) -> str:
    from registry.verify.remote import resolve_target

    with errors():
        return resolve_target(client, target)


def _model_of(target: str) -> str | None:
    """``ns/model`` when TARGET names one (it chooses the CID's listing), None for a bare CID."""
    from registry.verify.remote import target_model

    return target_model(target)


@click.command(epilog=GATE_EPILOG)
@click.argument("target")
@click.option(
    "--require", type=click.Choice(["validated", "curated"]), default="validated", show_default=True
)
@click.option("--min-replicas", type=click.IntRange(min=1), help="Pinned copies every shard must have.")
@click.option(
    "--trust-policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check signatures against this policy file (registry mode: instead of the registry's policy).",
)
@click.option(
    "--namespace", help="Which namespace of the policy file applies (default: its only one, or '*')."
)
@click.option("--memory-bytes", type=click.IntRange(min=1), help="Local mode: sandbox address-space budget.")
@click.option("--cpu-seconds", type=click.IntRange(min=1), help="Local mode: sandbox CPU-time budget.")
@click.option("--wall-seconds", type=click.FloatRange(min=0.1), help="Local mode: sandbox wall-clock budget.")
@click.option("--no-smoke", is_flag=True, help="Local mode: skip the loader and smoke suite.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML here.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    help="Registry mode: while the pack is not ready or its pointer not there yet (14, 17), "
    "ask again for up to this many seconds.",
)
@_registry_options
def gate(
    target: str,
    require: str,
    min_replicas: int | None,
    trust_policy: Path | None,
    namespace: str | None,
    memory_bytes: int | None,
    cpu_seconds: int | None,
    wall_seconds: float | None,
    no_smoke: bool,
    as_json: bool,
    junit: Path | None,
    wait: float,
    registry: str,
    token: str | None,
) -> None:
    """Gate a release: TARGET is a pack folder (local, no registry) or NS/MODEL@TAG | CID (registry).

    Local mode checks the manifest schema, every shard's sha256 and CID, signatures (with
    --trust-policy), then loads and smoke-tests the model in the sandbox. Registry mode checks the
    registry's verdict (--require), re-verifies the manifest and signatures here, and the replicas.
    """
    from registry.gate.config import SandboxBudget
    from registry.names import parse_ref
    from registry.verify.checks import junit_xml
    from registry.verify.local import gate_dir
    from registry.verify.remote import dumps, gate_remote

    policy = _load_policy(trust_policy, namespace)
    directory = Path(target)
    if directory.is_dir():
        base = SandboxBudget()
        budget = SandboxBudget(
            memory_bytes=memory_bytes or base.memory_bytes,
            cpu_seconds=cpu_seconds or base.cpu_seconds,
            wall_seconds=wall_seconds or base.wall_seconds,
        )
        report = gate_dir(directory, policy, budget, run_smoke=not no_smoke)
    else:
        try:
            parse_ref(target)
        except RegistryError:
            raise click.UsageError(
                f"{target!r} is neither a pack folder nor NAMESPACE/MODEL[@TAG] nor a pack CID"
            ) from None
        deadline = time.monotonic() + wait
        delay = 0.2
        with connect(registry, token) as client:
            while True:
                report = gate_remote(
                    client,
                    target,
                    require="curated" if require == "curated" else "validated",
                    min_replicas=min_replicas,
                    policy=policy,
                    policy_file=trust_policy,
                )
                remaining = deadline - time.monotonic()
                if report.exit_code not in _PENDING or remaining <= 0:
                    break
                time.sleep(min(delay, remaining))  # validation and curation run in the registry's jobs
                delay = min(delay * 1.5, 5.0)
    if junit is not None:
        try:
            junit.write_bytes(junit_xml(report))
        except OSError as e:
            raise click.ClickException(f"cannot write {junit}: {e.strerror}") from None
    if as_json:
        click.echo(dumps(report))
    else:
        for line in report.lines():
            click.echo(line)
    click.get_current_context().exit(report.exit_code)


def _load_policy(path: Path | None, namespace: str | None) -> Any:
    if path is None:
        return None
    from registry.trust.errors import TrustError
    from registry.trust.policy import load_policy

    try:
        policy = load_policy(path).for_namespace(namespace)
    except TrustError as e:
        raise click.UsageError(e.message) from None
    if policy is None:
        raise click.UsageError(
            f"trust policy {path} has no namespace {namespace!r} and no '*'"
            if namespace
            else f"trust policy {path} has several namespaces; pass --namespace"
        )
    return policy


@click.command()
@click.argument("target")
@click.option("--wait", is_flag=True, help="Wait for the verdict; exit 1 unless the pack passes.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800, show_default=True, help="With --wait.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@_registry_options
def validate(
    target: str, wait: bool, timeout: float, as_json: bool, registry: str, token: str | None
) -> None:
    """Ask the registry to validate TARGET (NS/MODEL@TAG | CID) now; needs a publish or admin token."""
    with connect(registry, token) as client:
        cid, model = _cid_of(client, target), _model_of(target)
        with errors():
            before = (client.validation(cid, model=model).get("validation") or {}).get("started_at")
            queued = client.request_validation(cid, model=model)
            result: dict[str, Any] = {"cid": cid, "job_id": queued["job_id"], "status": "queued"}
            if wait:
                result = _wait_for_verdict(client, cid, before, timeout, model)
    if as_json:
        print_json(result)
    elif not wait:
        click.echo(f"validation of {cid} queued (job {result['job_id']})")
    else:
        run = result.get("validation") or {}
        click.echo(f"{cid}: {result.get('state')} ({run.get('verdict')}: {run.get('reason')})")
    if wait and (result.get("validation") or {}).get("verdict") != "pass":
        click.get_current_context().exit(1)


def _wait_for_verdict(
    client: RegistryClient, cid: str, before: str | None, timeout: float, model: str | None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        v: dict[str, Any] = client.validation(cid, model=model)
        run = v.get("validation") or {}
        if run.get("started_at") != before and run.get("verdict") not in (None, "running"):
            return v
        if time.monotonic() > deadline:
            raise click.ClickException(f"no verdict for {cid} within {timeout:g} s (still {v.get('state')})")
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)


@click.command()
@click.argument("target")
@click.option("--reason", required=True, help="Why (written to the audit log and the pointer history).")
@click.option("--undo", is_flag=True, help="Un-curate: withdraw the pack; the curated pointer rolls back.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@_registry_options
def curate(target: str, reason: str, undo: bool, as_json: bool, registry: str, token: str | None) -> None:
    """Admin: point NS/MODEL@curated at TARGET (it must pass the curation rule), or --undo it."""
    with connect(registry, token) as client:
        cid, model = _cid_of(client, target), _model_of(target)
        with errors():
            out = client.curate(cid, reason, undo=undo, model=model)
    if as_json:
        print_json(out)
    else:
        verb = "un-curated" if undo else "curated"
        click.echo(f"{cid} {verb}; curated pointer now {out.get('pointer') or '(none)'}")
