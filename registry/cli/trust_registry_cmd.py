"""``modelpack key`` and ``modelpack policy``: signing keys and namespace trust policies in a registry, over its API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from registry.trust.errors import TrustError

REGISTRY_OPT = click.option(
    "--registry",
    envvar="MODELPACK_REGISTRY",
    metavar="URL",
    help="Registry API base URL [env MODELPACK_REGISTRY].",
)
TOKEN_OPT = click.option("--token", envvar="MODELPACK_TOKEN", help="API token [env MODELPACK_TOKEN].")


def http_client(registry: str | None, token: str | None, *, need_token: bool = False) -> Any:
    from registry.verify.registry_verify import RegistryHttp

    if not registry:
        raise click.UsageError("give --registry URL (or set MODELPACK_REGISTRY)")
    if need_token and not token:
        raise click.UsageError("this needs an API token: --token TOKEN (or set MODELPACK_TOKEN)")
    try:
        return RegistryHttp(registry, token)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _call(http: Any, method: str, path: str, payload: Any = None) -> Any:
    from registry.verify.registry_verify import FetchError

    try:
        return http.json(method, path, payload)
    except FetchError as e:
        raise click.ClickException(e.message) from None


def _public_key_text(value: str) -> str:
    """A public key from a file (.pub PEM, or a private key file, whose public half is taken) or literal text."""
    from registry.cli.trust_cmd import _key_warnings_to_stderr as key_warnings_to_stderr
    from registry.trust.keys import load_private_key, public_key_of

    path = Path(value)
    if not path.is_file():
        return value
    data = path.read_bytes()[:16384]
    if b"PRIVATE KEY" in data:
        try:
            with key_warnings_to_stderr():
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
@REGISTRY_OPT
@TOKEN_OPT
@click.option("--json", "as_json", is_flag=True)
def key_add(public_key: str, registry: str | None, token: str | None, as_json: bool) -> None:
    """Register PUBLIC_KEY (a .pub file, a private key file, or PEM/base64 text) for your publisher."""
    http = http_client(registry, token, need_token=True)
    out = _call(http, "POST", "/v1/keys", {"public_key": _public_key_text(public_key)})
    click.echo(json.dumps(out, indent=2) if as_json else f"registered {out['key_id']} for {out['publisher']}")


@key.command("ls")
@click.option("--publisher", help="Only this publisher's keys.")
@REGISTRY_OPT
@TOKEN_OPT
@click.option("--json", "as_json", is_flag=True)
def key_ls(publisher: str | None, registry: str | None, token: str | None, as_json: bool) -> None:
    """List registered keys."""
    from registry.verify.registry_verify import q

    http = http_client(registry, token)
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = "&".join(
            f"{k}={q(v)}" for k, v in (("publisher", publisher), ("cursor", cursor)) if v is not None
        )
        page = _call(http, "GET", "/v1/keys" + (f"?{query}" if query else ""))
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if as_json:
        click.echo(json.dumps(items, indent=2))
    for k in [] if as_json else items:
        click.echo(_key_line(k))


@key.command("revoke")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option(
    "--at", "at", help="Revocation time, RFC 3339 with a zone (default now; a past time needs an admin)."
)
@REGISTRY_OPT
@TOKEN_OPT
@click.option("--json", "as_json", is_flag=True)
def key_revoke(
    key_id: str, reason: str, at: str | None, registry: str | None, token: str | None, as_json: bool
) -> None:
    """Revoke KEY_ID: signatures the registry receives from the revocation time on are invalid."""
    from registry.verify.registry_verify import q

    http = http_client(registry, token, need_token=True)
    body: dict[str, Any] = {"reason": reason} | ({"at": at} if at else {})
    out = _call(http, "POST", f"/v1/keys/{q(key_id)}/revoke", body)
    if as_json:
        click.echo(json.dumps(out, indent=2))
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
@REGISTRY_OPT
@TOKEN_OPT
@click.option("--json", "as_json", is_flag=True)
@click.option("--file-format", is_flag=True, help="Print the policy as a file for `verify --trust-policy`.")
def policy_show(
    namespace: str, registry: str | None, token: str | None, as_json: bool, file_format: bool
) -> None:
    """Show NAMESPACE's trust policy."""
    from registry.verify.registry_verify import q

    http = http_client(registry, token)
    if file_format:
        click.echo(json.dumps(_call(http, "GET", f"/v1/namespaces/{q(namespace)}/policy/file"), indent=2))
        return
    out = _call(http, "GET", f"/v1/namespaces/{q(namespace)}/policy")
    if as_json:
        click.echo(json.dumps(out, indent=2))
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
@REGISTRY_OPT
@TOKEN_OPT
def policy_set(
    namespace: str,
    keys: tuple[str, ...],
    publishers: tuple[str, ...],
    required: int,
    reason: str | None,
    registry: str | None,
    token: str | None,
) -> None:
    """Replace NAMESPACE's trust policy (admin scope for the namespace)."""
    from registry.verify.registry_verify import q

    http = http_client(registry, token, need_token=True)
    body = {
        "keys": list(keys),
        "publishers": list(publishers),
        "required_signatures": required,
        "reason": reason,
    }
    out = _call(http, "PUT", f"/v1/namespaces/{q(namespace)}/policy", body)
    click.echo(
        f"namespace {out['namespace']}: {len(out['keys'])} key(s), {len(out['publishers'])} publisher(s), "
        f"{out['required_signatures']} signature(s) required"
    )
