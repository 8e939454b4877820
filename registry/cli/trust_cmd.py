"""``modelpack keygen``, ``sign`` and ``verify`` (the registry's ``key`` and ``policy``: trust_registry_cmd).

``verify`` takes a local pack directory (fully offline) or, against the registry (``--registry URL``,
``MODELPACK_REGISTRY``, default http://127.0.0.1:8740), ``NS/MODEL@CHANNEL``, an IPNS name or a pack CID
(record -> manifest -> signatures -> shard bytes; see registry.verify.registry_verify).
Exit codes: 0 every check held; 1 at least one failed (one ``FAIL`` line each on stdout); 2 usage error
(bad option, unreadable policy or state file, unknown target); 3 the registry could not be reached or
answered with an error (not found, unauthorized, ...).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from registry.cli.options import connect, remote_options
from registry.cli.output import print_json, warnings_to_stderr
from registry.client import ClientError
from registry.trust.errors import TrustError


def _write_json(path: Path, obj: Any) -> None:
    from registry.trust.keys import write_atomically

    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    write_atomically(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode)


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT and OUT.pub if they exist.")
def keygen(out: Path, force: bool) -> None:
    """Generate an Ed25519 signing key: OUT (PKCS#8 PEM, mode 0600) and OUT.pub (public PEM).

    Prints the key id (ed25519:<sha256 of the raw public key, hex>) and the raw public key in base64.
    """
    from registry.trust.keys import generate_private_key, public_key_of, write_atomically, write_private_key

    pub_path = out.with_name(out.name + ".pub")
    if not force:
        for p in (out, pub_path):
            if p.exists():
                raise click.ClickException(f"{p} already exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise click.ClickException(f"directory {out.parent} does not exist")
    key = generate_private_key()
    pub = public_key_of(key)
    try:
        write_private_key(out, key, overwrite=force)
        write_atomically(pub_path, pub.to_pem(), 0o644)
    except (TrustError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"private key: {out}")
    click.echo(f"public key:  {pub_path}")
    click.echo(f"key id:      {pub.key_id}")
    click.echo(f"public key (base64): {pub.b64}")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--detached",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the signature to this file instead of into manifest.json "
    "(verify finds DIR/signatures/*.sig.json by itself).",
)
@click.option("--dsse", is_flag=True, help="Also sign DIR/manifest.dsse.json (in-toto statement, DSSE).")
def sign(directory: Path, key_path: Path, detached: Path | None, dsse: bool) -> None:
    """Sign DIR/manifest.json with an Ed25519 key (RFC 8785 bytes, signature fields removed)."""
    from model_core.format.fields import MANIFEST_NAME
    from registry.trust.keys import InsecureKeyFileWarning, load_private_key
    from registry.trust.signatures import make_signature, sign_manifest, write_detached_signature
    from registry.verify.packcheck import DSSE_NAME, read_manifest

    try:
        with warnings_to_stderr(InsecureKeyFileWarning):
            key = load_private_key(key_path)
        manifest = read_manifest(directory)
        sig = make_signature(manifest, key)
        if detached is not None:
            write_detached_signature(detached, sig)
            click.echo(f"wrote detached signature by {sig.key_id} to {detached}")
        else:
            _write_json(directory / MANIFEST_NAME, sign_manifest(manifest, key))
            click.echo(f"signed {directory / MANIFEST_NAME} with {sig.key_id}")
        if dsse:
            _write_json(directory / DSSE_NAME, _merged_envelope(directory / DSSE_NAME, manifest, key))
            click.echo(f"signed {directory / DSSE_NAME} with {sig.key_id}")
    except TrustError as e:
        raise click.ClickException(e.message) from None
    except OSError as e:
        raise click.ClickException(f"cannot write {e.filename or directory}: {e.strerror}") from None


def _merged_envelope(path: Path, manifest: dict[str, Any], key: Any) -> dict[str, Any]:
    """A new envelope, keeping other keys' signatures from an existing one over the same statement."""
    from registry.trust.dsse import make_envelope, parse_envelope

    new = make_envelope(manifest, [key])
    if path.is_file():
        try:
            old = parse_envelope(path.read_bytes())
        except TrustError:
            return new
        if old["payload"] == new["payload"]:
            mine = {s["keyid"] for s in new["signatures"]}
            kept = [s for s in old["signatures"] if isinstance(s, dict) and s.get("keyid") not in mine]
            new["signatures"] = kept + new["signatures"]
    return new


EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FETCH = 3


@click.command()
@click.argument("target")
@click.option(
    "--trust-policy",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Trusted keys and required signatures (JSON, or TOML when it ends in .toml); "
    "for a registry TARGET, used instead of the registry's policy (fully offline trust).",
)
@click.option(
    "--namespace",
    help="Which namespace of the policy applies (default: its only one, or '*'; a channel's own); "
    "required with --trust-policy for a pack CID or an IPNS name.",
)
@click.option(
    "--signature",
    "signatures",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="DIR only: a detached signature file (repeatable).",
)
@click.option("--skip-signatures", is_flag=True, help="DIR only: check shard bytes only; no trust decision.")
@click.option("--no-cids", is_flag=True, help="DIR only: check sha256 only, not shard CIDs.")
@click.option(
    "--ipns-record",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="DIR only: an IPNS record (application/vnd.ipfs.ipns-record) that must point at this manifest.",
)
@click.option(
    "--ipns-name", help="DIR only: the IPNS name (k51...) the record is for; required with --ipns-record."
)
@click.option(
    "--seen-sequence",
    type=click.IntRange(min=0),
    help="DIR only: highest record sequence seen before (refuse <=).",
)
@remote_options(with_json=False)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the highest IPNS sequence seen per name, and each channel's IPNS name (pinned on first "
    "use), are kept (default ~/.cache/modelpack/ipns-seen.json).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def verify(
    target: str,
    trust_policy: Path | None,
    namespace: str | None,
    signatures: tuple[Path, ...],
    skip_signatures: bool,
    no_cids: bool,
    ipns_record: Path | None,
    ipns_name: str | None,
    seen_sequence: int | None,
    registry: str,
    token: str | None,
    state_file: Path | None,
    as_json: bool,
) -> None:
    """Verify a pack: TARGET is a pack directory (offline) or, against the registry, NS/MODEL@CHANNEL,
    an IPNS name (k51... / 12D3KooW...) or a pack CID.

    Remote targets: the channel's IPNS name (pinned on first use: a changed name fails), its IPNS
    record (signature, validity, sequence not older than seen before; a withdrawal fails), the manifest against the record's CID, signatures against the trust policy, every
    shard's sha256 and CID. Exit 0 only when every check holds; 1 a check failed (one line each);
    2 usage error; 3 the registry could not be reached or answered with an error.
    """
    if Path(target).is_dir():
        report = _verify_dir(
            Path(target),
            trust_policy,
            namespace,
            signatures,
            skip_signatures,
            no_cids,
            ipns_record,
            ipns_name,
            seen_sequence,
        )
    else:
        if signatures or skip_signatures or no_cids or ipns_record or ipns_name or seen_sequence is not None:
            raise click.UsageError(
                f"{target!r} is not a directory, so it is verified against the registry; --signature, "
                "--skip-signatures, --no-cids, --ipns-record, --ipns-name and --seen-sequence apply to a "
                "local pack directory only"
            )
        report = _verify_remote(target, registry, token, trust_policy, namespace, state_file)
    _print_report(report, as_json)
    click.get_current_context().exit(0 if report.ok else EXIT_FAILED)


def _verify_dir(
    directory: Path,
    trust_policy: Path | None,
    namespace: str | None,
    signatures: tuple[Path, ...],
    skip_signatures: bool,
    no_cids: bool,
    ipns_record: Path | None,
    ipns_name: str | None,
    seen_sequence: int | None,
) -> Any:
    from registry.verify.packcheck import PackCheckConfig, check_ipns_record, read_manifest, verify_pack_dir

    if (ipns_record is None) != (ipns_name is None):
        raise click.UsageError("--ipns-record and --ipns-name go together")
    if trust_policy is None and not skip_signatures:
        raise click.UsageError("give --trust-policy FILE, or --skip-signatures to check shard bytes only")
    ns_policy = _namespace_policy(trust_policy, namespace) if trust_policy is not None else None
    report = verify_pack_dir(
        directory, ns_policy, detached=signatures, config=PackCheckConfig(check_cids=not no_cids)
    )
    if ipns_record is not None and ipns_name is not None:
        try:
            manifest = read_manifest(directory)
        except TrustError:
            manifest = None  # already reported as a failure
        if manifest is not None:
            with ipns_record.open("rb") as f:
                record = f.read(1024 * 1024)  # more than the limit, so "too large" reports a true size
            check_ipns_record(report, manifest, ipns_name, record, datetime.now(UTC), seen_sequence)
    return report


def _namespace_policy(trust_policy: Path, namespace: str | None) -> Any:
    from registry.trust.policy import load_policy

    try:
        ns_policy = load_policy(trust_policy).for_namespace(namespace)
    except TrustError as e:
        raise click.UsageError(e.message) from None
    if ns_policy is None:
        raise click.UsageError(
            f"trust policy {trust_policy} has no namespace {namespace!r} and no '*'"
            if namespace
            else f"trust policy {trust_policy} has several namespaces; pass --namespace"
        )
    return ns_policy


def _verify_remote(
    target: str,
    registry: str,
    token: str | None,
    trust_policy: Path | None,
    namespace: str | None,
    state_file: Path | None,
) -> Any:
    from registry.verify.registry_verify import (
        NAMESPACE_REQUIRED,
        SeenState,
        classify,
        default_state_file,
        verify_remote,
    )

    try:
        kind = classify(target)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if trust_policy is not None and kind.kind in ("cid", "ipns") and not namespace:
        raise click.UsageError(NAMESPACE_REQUIRED)
    if trust_policy is not None:
        _namespace_policy(trust_policy, namespace or kind.namespace)  # fail early on a bad file
    try:
        state = SeenState.load(state_file or default_state_file())
        with connect(registry, token) as client:
            return verify_remote(client, kind, policy_file=trust_policy, namespace=namespace, state=state)
    except ClientError as e:
        click.echo(f"FAIL {e.describe()}")
        click.get_current_context().exit(EXIT_FETCH)
    except TrustError as e:
        raise click.UsageError(e.message) from None
    raise AssertionError("unreachable")


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "checked_at": datetime.now(UTC).isoformat(),
                "failures": report.failures,
                "notes": report.notes,
                "signatures": [
                    {
                        "key_id": c.key_id,
                        "verdict": c.verdict.value,
                        "reason": c.reason,
                        "source": c.source,
                    }
                    for c in report.signatures
                ],
                "trusted_valid": list(report.decision.trusted_valid) if report.decision else [],
                "shards_checked": report.shards_checked,
                "files_checked": report.files_checked,
            }
        )
        return
    for line in report.notes:
        click.echo(f"note: {line}", err=True)
    for line in report.failures:
        click.echo(f"FAIL {line}")
    if report.ok:
        trusted = len(report.decision.trusted_valid) if report.decision else 0
        click.echo(
            f"OK {report.shards_checked} shard(s) and {report.files_checked} file(s) verified, "
            f"{trusted} trusted signature(s)"
        )
