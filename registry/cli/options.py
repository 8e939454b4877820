"""What every command that talks to a registry over its API shares: its options and its client.

``--registry`` (env ``MODELPACK_REGISTRY``, default http://127.0.0.1:8740) and ``--token`` (env
``MODELPACK_TOKEN``) are the same for every remote command; a malformed URL or a missing token that
the command needs is a usage error (exit code 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from registry.client import DEFAULT_REGISTRY, ClientError, RegistryClient


def remote_options(*, with_json: bool = True) -> Callable[[Any], Any]:
    """``--registry`` (env MODELPACK_REGISTRY), ``--token`` (env MODELPACK_TOKEN) and, optionally, ``--json``."""

    def decorate(f: Any) -> Any:
        if with_json:
            f = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(f)
        f = click.option("--token", envvar="MODELPACK_TOKEN", help="API token (env MODELPACK_TOKEN).")(f)
        f = click.option(
            "--registry",
            envvar="MODELPACK_REGISTRY",
            default=DEFAULT_REGISTRY,
            show_default=True,
            metavar="URL",
            help="Registry URL (env MODELPACK_REGISTRY).",
        )(f)
        return f

    return decorate


def connect(registry: str, token: str | None, *, need_token: bool = False) -> RegistryClient:
    """The registry client for the command's ``--registry`` and ``--token`` (use it in a ``with``)."""
    if need_token and not token:
        raise click.UsageError("this needs an API token: --token TOKEN (or set MODELPACK_TOKEN)")
    try:
        return RegistryClient(registry, token)
    except ClientError as e:
        raise click.UsageError(e.message) from None
