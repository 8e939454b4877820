"""``modelpack cid``: the CID ``ipfs add --only-hash`` would print for a file, stream or folder."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pinner.content_errors import DirectoryTooLarge
from pinner.unixfs import PROFILES, UnixfsParams, cid_text, hash_directory
from pinner.unixfs.params import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_LINKS


def resolve_params(
    profile: str | None,
    cid_version: int | None,
    raw_leaves: bool | None,
    chunk_size: int | None,
    max_links: int | None,
) -> UnixfsParams:
    """Kubo's precedence: explicit flags over the profile's settings (a profile's raw-leaves setting
    stays set even under ``--cid-version``); otherwise ``--cid-version=1`` implies raw leaves."""
    base = PROFILES[profile] if profile else None
    version = cid_version if cid_version is not None else (base.cid_version if base else 0)
    if raw_leaves is None and base is not None:
        raw_leaves = base.raw_leaves
    return UnixfsParams(
        chunk_size=chunk_size
        if chunk_size is not None
        else (base.chunk_size if base else DEFAULT_CHUNK_SIZE),
        max_links=max_links if max_links is not None else (base.max_links if base else DEFAULT_MAX_LINKS),
        cid_version=version,
        raw_leaves=raw_leaves,
    )


@click.command("cid")
@click.argument("file", type=click.Path(exists=True, allow_dash=True, path_type=str))
@click.option(
    "--cid-version", type=click.IntRange(0, 1), default=None, help="0 (default) or 1 (implies raw leaves)."
)
@click.option(
    "--raw-leaves/--no-raw-leaves", default=None, help="Leaves as raw blocks (default: CIDv1 only)."
)
@click.option("--chunk-size", type=int, default=None, help=f"Bytes per leaf (default {DEFAULT_CHUNK_SIZE}).")
@click.option("--max-links", type=int, default=None, help=f"Links per node (default {DEFAULT_MAX_LINKS}).")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default=None, help="Named import profile.")
@click.option("--sha256", "show_sha256", is_flag=True, help="Also print the file's sha256 (hex).")
def cid(
    file: str,
    cid_version: int | None,
    raw_leaves: bool | None,
    chunk_size: int | None,
    max_links: int | None,
    profile: str | None,
    show_sha256: bool,
) -> None:
    """Print the UnixFS CID of FILE (a file, a folder, or - for stdin) without storing anything."""
    try:
        params = resolve_params(profile, cid_version, raw_leaves, chunk_size, max_links)
    except ValueError as e:
        raise click.ClickException(f"invalid import settings: {e}.") from None
    try:
        source = sys.stdin.buffer if file == "-" else Path(file)
        if isinstance(source, Path) and source.is_dir():
            if show_sha256:
                raise click.ClickException(f"--sha256 needs a file, and {file} is a folder.")
            click.echo(str(hash_directory(source, params)[0]))
            return
        # Text straight from the binary CID: a one-shot process need not import multiformats.
        text, sha256, _size = cid_text(source, params, file_sha256=show_sha256)
        click.echo(text)
        if sha256 is not None:
            click.echo(sha256.hex())
    except (OSError, ValueError, DirectoryTooLarge) as e:
        raise click.ClickException(f"cannot hash {file}: {e}") from None
