"""``modelpack key`` and ``modelpack policy``: signing keys and namespace trust policies in a registry, over its API.

A refusal by the registry prints the request, the status and the server's code with its sentence (exit 1).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from registry.cli.options import connect, remote_options
from registry.cli.output import errors, print_json, warnings_to_stderr
from registry.trust.errors import TrustError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

remote = remote_options()


def _load_private(path: Path) -> Ed25519PrivateKey:
    from registry.trust.keys import InsecureKeyFileWarning, load_private_key

    try:
        with warnings_to_stderr(InsecureKeyFileWarning):
            return load_private_key(path)
    except TrustError as e:
        raise click.ClickException(e.message) from None


def _is_private_file(path: Path) -> bool:
    return path.is_file() and b"PRIVATE KEY" in path.read_bytes()[:16384]


def _signing_key(value: str, key_file: str | None) -> tuple[str, Ed25519PrivateKey]:
    """(the public key as base64, its private key) for ``key add``: the registry asks for proof of possession.

    ``value`` is a private key file, a public key file (``X.pub``: the private key ``X`` next to it is
    used unless ``--key`` names one) or PEM/base64 text (with ``--key``).
    """
    from registry.trust.keys import parse_public_key, public_key_of

    path = Path(value)
    if _is_private_file(path):
        private = _load_private(Path(key_file) if key_file else path)
        public = public_key_of(_load_private(path))
    else:
        text = path.read_bytes()[:16384].decode("ascii", "replace") if path.is_file() else value
        try:
            public = parse_public_key(text)
        except TrustError as e:
            raise click.ClickException(f"{e.code}: {e.message}") from None
        sibling = path.with_suffix("") if path.suffix == ".pub" else None
        if key_file is None and sibling is not None and _is_private_file(sibling):
            key_file = str(sibling)
        if key_file is None:
            raise click.ClickException(
                "registering a key needs proof that you hold it: the registry's challenge is signed with"
                " the private key; give the private key file (modelpack key add alice.key, or --key FILE)"
            )
        private = _load_private(Path(key_file))
    if public_key_of(private).raw != public.raw:
        raise click.ClickException(
            f"the private key {key_file or value} is not the private half of {public.key_id}"
        )
    return public.b64, private


def _key_line(k: dict[str, Any]) -> str:
    state = f"revoked {k['revoked_at']} ({k.get('revocation_reason')})" if k.get("revoked_at") else "active"
    return f"{k['key_id']}  {k.get('publisher') or '-'}  registered {k['registered_at']}  {state}"


@click.group()
def key() -> None:
    """Signing keys in the registry: register, list, revoke."""


@key.command("add")
@click.argument("public_key")
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False),
    help="The private key file (default: PUBLIC_KEY itself, or X for X.pub) that signs the challenge.",
)
@remote
def key_add(public_key: str, key_file: str | None, registry: str, token: str | None, as_json: bool) -> None:
    """Register PUBLIC_KEY (a private key file, a .pub file, or PEM/base64 text) for your publisher.

    The registry asks for proof of possession: its challenge is signed here with the private key
    (never sent), so the private key file must be at hand.
    """
    from registry.trust.key_challenge import registration_statement
    from registry.trust.keys import key_id_of

    with errors(with_request=True), connect(registry, token, need_token=True) as client:
        b64, private = _signing_key(public_key, key_file)
        ch = client.key_challenge(b64)
        key_id = key_id_of(base64.b64decode(b64))
        statement = registration_statement(str(ch.get("publisher")), key_id, str(ch.get("challenge")))
        if ch.get("key_id") != key_id or str(ch.get("statement", "")).encode() != statement:
            raise click.ClickException(
                "the registry's challenge is not a key-registration statement for this key; nothing signed"
            )
        signature = base64.b64encode(private.sign(statement)).decode("ascii")
        out = client.add_key(b64, str(ch["challenge"]), signature)
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
    click.echo(f"max_drift: {out.get('max_drift') or '(none)'}")
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
@click.option(
    "--min-top1-agreement", type=float, help="max_drift: least top-1 agreement with the curated pack."
)
@click.option("--max-mean-kl", type=float, help="max_drift: largest mean KL from the curated pack (nats).")
@remote_options(with_json=False)
def policy_set(
    namespace: str,
    keys: tuple[str, ...],
    publishers: tuple[str, ...],
    required: int,
    reason: str | None,
    min_top1_agreement: float | None,
    max_mean_kl: float | None,
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
    drift = {"min_top1_agreement": min_top1_agreement, "max_mean_kl": max_mean_kl}
    body["max_drift"] = {k: v for k, v in drift.items() if v is not None} or None
    with errors(with_request=True), connect(registry, token, need_token=True) as client:
        out = client.set_policy(namespace, body)
    click.echo(
        f"namespace {out['namespace']}: {len(out['keys'])} key(s), {len(out['publishers'])} publisher(s), "
        f"{out['required_signatures']} signature(s) required"
    )
