"""``modelpack key`` and ``modelpack policy``: signing keys and namespace trust policies in a registry, over its API.

A refusal by the registry prints the request, the status and the server's code with its sentence (exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from registry.cli.options import connect, remote_options
from registry.cli.output import errors, print_json, warnings_to_stderr
from registry.trust.errors import TrustError

remote = remote_options()


def _public_key_text(value: str) -> str:
    """A public key from a file (.pub PEM, or a private key file, whose public half is taken) or literal text."""
    from registry.trust.keys import InsecureKeyFileWarning, load_private_key, public_key_of

    path = Path(value)
    if not path.is_file():
        return value
    data = path.read_bytes()[:16384]
    if b"PRIVATE KEY" in data:
        try:
            with warnings_to_stderr(InsecureKeyFileWarning):
                return public_key_of(load_private_key(path)).b64
        except TrustError as e:
            raise click.ClickException(e.message) from None
    return data.decode("ascii", "replace")


def _key_line(k: dict[str, Any]) -> str:
    state = f"revoked {k['revoked_at']} ({k.get('revocation_reason')})" if k.get("revoked_at") else "active"
    return f"{k['key_id']}  {k.get('publisher') or '-'}  registered {k['registered_at']}  {state}"


@click.group()
def key() -> None:
    """Signing keys in the registry: register, list, revoke."""


@key.command("add")
@click.argument("public_key")
@remote
def key_add(public_key: str, registry: str, token: str | None, as_json: bool) -> None:
    """Register PUBLIC_KEY (a .pub file, a private key file, or PEM/base64 text) for your publisher."""
    with errors(with_request=True), connect(registry, token, need_token=True) as client:
        out = client.add_key(_public_key_text(public_key))
    if as_json:
        print_json(out)
    else:
        click.echo(f"registered {out['key_id']} for {out['publisher']}")


@key.command("ls")
@click.option("--publisher", help="Only this publisher's keys.")
@remote
def key_ls(publisher: str | None, registry: str, token: str | None, as_json: bool) -> None:
    """List registered keys."""
    with errors(with_request=True), connect(registry, token) as client:
        items = list(client.keys(publisher))
    if as_json:
        print_json(items)
    for k in [] if as_json else items:
        click.echo(_key_line(k))


@key.command("revoke")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option(
    "--at", "at", help="Revocation time, RFC 3339 with a zone (default now; a past time needs an admin)."
)
@remote
def key_revoke(
    key_id: str, reason: str, at: str | None, registry: str, token: str | None, as_json: bool
) -> None:
    """Revoke KEY_ID: signatures the registry receives from the revocation time on are invalid."""
    with errors(with_request=True), connect(registry, token, need_token=True) as client:
        out = client.revoke_key(key_id, reason, at)
    if as_json:
        print_json(out)
        return
    click.echo(_key_line(out["key"]))
    if out["affected_packs"]:
        click.echo(f"{out['revalidated_signatures']} stored signature(s) now revoked, in packs:")
        for cid in out["affected_packs"]:
            click.echo(f"  {cid}")


@click.group()
def policy() -> None:
    """A namespace's trust policy: which keys or publishers it trusts, how many signatures curation needs."""


@policy.command("show")
@click.argument("namespace")
@remote
@click.option("--file-format", is_flag=True, help="Print the policy as a file for `verify --trust-policy`.")
def policy_show(namespace: str, registry: str, token: str | None, as_json: bool, file_format: bool) -> None:
    """Show NAMESPACE's trust policy."""
    with errors(with_request=True), connect(registry, token) as client:
        out = client.policy_file(namespace) if file_format else client.policy(namespace)
    if as_json or file_format:
        print_json(out)
        return
    click.echo(f"namespace {out['namespace']}: {out['required_signatures']} trusted signature(s) required")
    click.echo(f"trusted publishers: {', '.join(out['publishers']) or '(none)'}")
    click.echo("trusted keys:" + ("" if out["keys"] or out["publisher_keys"] else " (none)"))
    for k in out["keys"] + [k for k in out["publisher_keys"] if k not in out["keys"]]:
        click.echo("  " + _key_line(k))


@policy.command("set")
@click.argument("namespace")
@click.option("--key", "keys", multiple=True, help="A trusted key id (repeatable).")
@click.option(
    "--publisher", "publishers", multiple=True, help="Trust every key of this publisher (repeatable)."
)
@click.option(
    "--required", type=click.IntRange(1, 64), default=1, show_default=True, help="Signatures needed."
)
@click.option("--reason", help="Why (kept in the audit log).")
@remote_options(with_json=False)
def policy_set(
    namespace: str,
    keys: tuple[str, ...],
    publishers: tuple[str, ...],
    required: int,
    reason: str | None,
    registry: str,
    token: str | None,
) -> None:
    """Replace NAMESPACE's trust policy (admin scope for the namespace)."""
    body = {
        "keys": list(keys),
        "publishers": list(publishers),
        "required_signatures": required,
        "reason": reason,
    }
    with errors(with_request=True), connect(registry, token, need_token=True) as client:
        out = client.set_policy(namespace, body)
    click.echo(
        f"namespace {out['namespace']}: {len(out['keys'])} key(s), {len(out['publishers'])} publisher(s), "
        f"{out['required_signatures']} signature(s) required"
    )
