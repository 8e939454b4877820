"""How every command prints: JSON for machines, tables and sentences for people, one sentence per error.

Exit code 1 for a failure the user can act on (``errors()``), 2 for a usage error (click's own).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.table import Table

from model_core.format.errors import InvalidManifest
from registry.client import ClientError
from registry.errors import RegistryError


@contextmanager
def errors(*, with_request: bool = False) -> Iterator[None]:
    """Every failure the user can act on becomes one sentence and exit code 1.

    With ``with_request`` a refusal by the registry names the request, status and code too
    (``POST /v1/keys: 400 bad_public_key: ...``).
    """
    try:
        yield
    except ClientError as e:
        raise click.ClickException(e.describe() if with_request else e.message) from None
    except (RegistryError, InvalidManifest) as e:
        raise click.ClickException(e.message) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or ''}: {e.strerror or e}".strip(": ")) from None


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    """``data`` as JSON with ``--json``, else what ``human`` prints."""
    if as_json:
        print_json(data)
    else:
        human()


def say(out: str, note: str) -> None:
    """The result alone on stdout (for ``$(...)``), the sentence about it on stderr."""
    click.echo(out)
    click.echo(note, err=True)


def table(*headers: str, title: str | None = None) -> Table:
    t = Table(title=title)
    for h in headers:
        t.add_column(h, overflow="fold")  # never cut a CID short
    return t


@contextmanager
def warnings_to_stderr(category: type[Warning]) -> Iterator[None]:
    """Warnings of ``category`` raised inside become ``warning: ...`` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        yield
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
