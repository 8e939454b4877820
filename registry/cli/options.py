"""Click options shared by every command that talks to a registry over its API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from registry.client import DEFAULT_REGISTRY


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
            help="Registry URL (env MODELPACK_REGISTRY).",
        )(f)
        return f

    return decorate
