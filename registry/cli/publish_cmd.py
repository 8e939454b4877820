"""``modelpack publish|pull|ls|show|pointer``: the publisher's side of the registry (``token``: token_cmd).

Remote commands read ``MODELPACK_REGISTRY`` (default http://127.0.0.1:8740) and ``MODELPACK_TOKEN``.
Exit codes: 0 success; 1 the registry refused or a byte did not verify (one sentence says which); 2 usage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from registry.cli.options import remote_options as _remote_options
from registry.client import RegistryClient
from registry.errors import RegistryError

MANIFEST = "manifest.json"
SIGNATURES_DIR = "signatures"
SIG_SUFFIX = ".sig.json"


remote_options = _remote_options()


@contextmanager
def _errors() -> Iterator[None]:
    """Every failure the user can act on becomes one sentence and exit code 1."""
    try:
        yield
    except RegistryError as e:
        raise click.ClickException(e.message) from None
    except OSError as e:
        raise click.ClickException(f"{e.filename or ''}: {e.strerror or e}".strip(": ")) from None


def _table(*headers: str) -> Table:
    table = Table()
    for h in headers:
        table.add_column(h, overflow="fold")  # never cut a CID short
    return table


def _say(out: str, note: str) -> None:
    click.echo(out)
    click.echo(note, err=True)


def _emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human()


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=True,
    )


class _Counting:
    """A file wrapper that reports bytes read, so hashing shows progress."""

    def __init__(self, f: BinaryIO, tick: Callable[[int], None]) -> None:
        self._f = f
        self._tick = tick

    def readinto(self, buf: Any) -> int:
        n = self._f.readinto(buf)  # type: ignore[attr-defined]
        self._tick(n or 0)
        return n or 0


def _hash(path: Path, cid: str, profile: str | None, progress: Progress) -> tuple[str, str]:
    from pinner.digests import parse_cid
    from pinner.unixfs import hash_file, params_for_cid

    task = progress.add_task(f"hashing {path.name}", total=path.stat().st_size)
    with path.open("rb") as f:
        counted: Any = _Counting(f, lambda n: progress.advance(task, n))
        digest = hash_file(counted, params_for_cid(parse_cid(cid), profile))
    progress.remove_task(task)
    return str(digest.cid), digest.sha256_hex


# --------------------------------------------------------------------------- publish


def _detached(pack_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((pack_dir / SIGNATURES_DIR).glob(f"*{SIG_SUFFIX}")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            raise click.ClickException(f"{path} is not JSON; remove it or re-sign the pack") from None
    return out


@click.command()
@click.argument("pack_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="NS/MODEL to publish under.")
@click.option("--tag", help="Also move this pointer (latest always moves).")
@click.option("--reason", help="Why (kept in pointer history).")
@click.option(
    "--no-upload",
    is_flag=True,
    help="Publish by CID only: upload no bytes; the registry fetches the shards it lacks from its IPFS nodes.",
)
@remote_options
def publish(
    pack_dir: Path,
    name: str,
    tag: str | None,
    reason: str | None,
    no_upload: bool,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Verify DIR locally, upload the shards the registry lacks, then publish its manifest; prints the pack CID.

    With --no-upload, shard files may be absent from DIR (those present are still checked); the pack is
    ``received`` until the registry has fetched and verified every shard, then ``available``.
    """
    from pinner.digests import cid_str, parse_cid
    from registry.manifest import check_tag, parse_manifest_bytes, parse_model_name

    with _errors():
        ref = parse_model_name(name)
        if tag:
            check_tag(tag)
        raw = (pack_dir / MANIFEST).read_bytes()
        parsed = parse_manifest_bytes(raw)
        show = not as_json and Console(stderr=True).is_terminal
        with RegistryClient(registry, token) as client, _progress(show) as progress:
            uploaded = 0
            for spec in parsed.doc.shards:
                path = pack_dir / spec.filename
                profile = parsed.doc.profile_of(spec)
                if no_upload and not path.exists():
                    continue  # on IPFS only: the registry verifies what its nodes serve
                cid, sha = _hash(path, spec.cid, profile, progress)
                if cid_str(parse_cid(cid)) != cid_str(parse_cid(spec.cid)):
                    raise click.ClickException(f"{path} has CID {cid}, but the manifest says {spec.cid}")
                if sha != spec.sha256_hex:
                    raise click.ClickException(
                        f"{path} has sha256:{sha}, but the manifest says {spec.sha256}"
                    )
                if no_upload or client.blob(spec.cid) is not None:
                    continue  # already there (an earlier run, or another pack): resume by skipping it
                task = progress.add_task(f"uploading {spec.filename}", total=path.stat().st_size)

                def advance(n: int, t: TaskID = task) -> None:
                    progress.advance(t, n)

                client.upload_blob(spec.cid, path, sha256=sha, profile=profile, progress=advance)
                progress.remove_task(task)
                uploaded += 1
            body: dict[str, Any] = {"manifest": parsed.data, "signatures": _detached(pack_dir)}
            if tag:
                body["tag"] = tag
            if reason:
                body["reason"] = reason
            result = client.publish(str(ref), body)
    result["uploaded_shards"] = uploaded
    note = (
        f"{'published' if result['created'] else 'already published'} {ref} {result['model_version']}, "
        f"state {result['state']} ({uploaded} shard(s) uploaded; pointers moved: "
        f"{', '.join(result['pointers']) or 'none'})"
    )
    if result["state"] == "received":
        note += (
            "; the registry is fetching the shards it lacks from its IPFS nodes and moves the pointers "
            f"when every byte is verified (follow it with: modelpack show {result['cid']})"
        )
    _emit(as_json, result, lambda: _say(result["cid"], note))


# --------------------------------------------------------------------------- pull


def _resolve(client: RegistryClient, text: str) -> str:
    from registry.manifest import parse_ref

    ref = parse_ref(text)
    if ref.cid is not None:
        return ref.cid
    assert ref.model is not None
    return str(client.resolve(str(ref.model), ref.tag)["cid"])


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@click.command()
@click.argument("ref")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@remote_options
def pull(ref: str, dest: Path, registry: str, token: str | None, as_json: bool) -> None:
    """Download NS/MODEL[@TAG] or a pack CID into DEST, verifying every byte (CID and sha256)."""
    from pinner.digests import cid_str, parse_cid
    from registry.manifest import pack_cid_of, parse_manifest_bytes

    with _errors(), RegistryClient(registry, token) as client:
        cid = _resolve(client, ref)
        raw = client.manifest_bytes(cid)
        if pack_cid_of(raw) != cid:
            raise click.ClickException(
                f"the manifest served for {cid} hashes to {pack_cid_of(raw)}; refusing it"
            )
        parsed = parse_manifest_bytes(raw)
        dest.mkdir(parents=True, exist_ok=True)
        show = not as_json and Console(stderr=True).is_terminal
        fetched = 0
        with _progress(show) as progress:
            for spec in parsed.doc.shards:
                final = dest / spec.filename
                want = cid_str(parse_cid(spec.cid))
                profile = parsed.doc.profile_of(spec)
                if final.exists():
                    have, sha = _hash(final, spec.cid, profile, progress)
                    if cid_str(parse_cid(have)) == want and sha == spec.sha256_hex:
                        continue  # already here and intact
                tmp = dest / f".{spec.filename}.part-{os.getpid()}"
                try:
                    task = progress.add_task(f"downloading {spec.filename}", total=spec.size)
                    with tmp.open("wb") as f:
                        for chunk in client.stream_shard(cid, spec.filename):
                            f.write(chunk)
                            progress.advance(task, len(chunk))
                        f.flush()
                        os.fsync(f.fileno())
                    progress.remove_task(task)
                    have, sha = _hash(tmp, spec.cid, profile, progress)
                    if cid_str(parse_cid(have)) != want:
                        raise click.ClickException(
                            f"{spec.filename}: downloaded bytes have CID {have}, expected {want}"
                        )
                    if sha != spec.sha256_hex:
                        raise click.ClickException(
                            f"{spec.filename}: downloaded bytes have sha256:{sha}, expected {spec.sha256}"
                        )
                    os.replace(tmp, final)
                    fetched += 1
                finally:
                    tmp.unlink(missing_ok=True)
        _write_atomic(dest / MANIFEST, raw)
    data = {"cid": cid, "dir": str(dest), "shards": len(parsed.doc.shards), "downloaded": fetched}
    _emit(as_json, data, lambda: click.echo(f"{cid} -> {dest} ({fetched} shard(s) downloaded, all verified)"))


# --------------------------------------------------------------------------- ls / show


@click.command()
@click.argument("where", required=False)
@click.option("--prefix", help="Only models whose name starts with this.")
@remote_options
def ls(where: str | None, prefix: str | None, registry: str, token: str | None, as_json: bool) -> None:
    """List models (of namespace NS), or the versions of NS/MODEL."""
    console = Console()
    with _errors(), RegistryClient(registry, token) as client:
        if where and "/" in where:
            from registry.manifest import parse_model_name

            items = list(client.versions(str(parse_model_name(where))))
            table = _table("CID", "VERSION", "STATE", "SIZE", "CREATED")
            for p in items:
                table.add_row(p["cid"], p["model_version"], p["state"], str(p["total_size"]), p["created_at"])
        else:
            items = list(client.models(where, prefix))
            table = _table("MODEL", "CREATED")
            for m in items:
                table.add_row(f"{m['namespace']}/{m['name']}", m["created_at"])
    _emit(as_json, items, lambda: console.print(table))


@click.command()
@click.argument("ref")
@remote_options
def show(ref: str, registry: str, token: str | None, as_json: bool) -> None:
    """Show a pack (NS/MODEL[@TAG] or CID): state, shards, signatures, pointers."""
    with _errors(), RegistryClient(registry, token) as client:
        detail = client.pack(_resolve(client, ref))

    def human() -> None:
        c = Console()
        c.print(
            f"[bold]{detail['namespace']}/{detail['model']}[/bold] {detail['model_version']}  {detail['cid']}"
        )
        c.print(
            f"state: {detail['state']}   size: {detail['total_size']} bytes   pointers: "
            f"{', '.join(detail['pointers']) or '-'}"
        )
        shards = _table("FILE", "CID", "SHA256", "SIZE")
        for s in detail["shards"]:
            shards.add_row(s["filename"], s["cid"], s["sha256"][:23] + "...", str(s["size"]))
        c.print(shards)
        if detail["signatures"]:
            sigs = _table("KEY", "KIND", "VERDICT")
            for g in detail["signatures"]:
                sigs.add_row(g["key_id"], g["kind"], g["verdict"])
            c.print(sigs)

    _emit(as_json, detail, human)


# --------------------------------------------------------------------------- pointer


@click.group()
def pointer() -> None:
    """Read and move pointers (NS/MODEL@TAG -> pack CID)."""


def _split(text: str, need_tag: bool) -> tuple[str, str | None]:
    from registry.manifest import check_tag, parse_model_name

    name, _, tag = text.partition("@")
    ref = parse_model_name(name)
    if need_tag and not tag:
        raise click.BadParameter(f"{text!r} needs a tag: NS/MODEL@TAG")
    return str(ref), check_tag(tag) if tag else None


@pointer.command("get")
@click.argument("ref")
@remote_options
def pointer_get(ref: str, registry: str, token: str | None, as_json: bool) -> None:
    """Print the CID NS/MODEL@TAG points at (tag defaults to latest)."""
    with _errors(), RegistryClient(registry, token) as client:
        name, tag = _split(ref, False)
        p = client.resolve(name, tag or "latest")
    _emit(as_json, p, lambda: click.echo(p["cid"]))


@pointer.command("set")
@click.argument("ref")
@click.argument("cid")
@click.option("--expect", help="Move only if the pointer still holds this CID (compare-and-swap).")
@click.option("--reason", help="Why (kept in the history).")
@remote_options
def pointer_set(
    ref: str,
    cid: str,
    expect: str | None,
    reason: str | None,
    registry: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Point NS/MODEL@TAG at CID."""
    with _errors(), RegistryClient(registry, token) as client:
        name, tag = _split(ref, True)
        assert tag is not None
        p = client.set_pointer(name, tag, cid, expected=expect, reason=reason)
    _emit(as_json, p, lambda: click.echo(f"{name}@{tag} -> {p['cid']}"))


@pointer.command("history")
@click.argument("ref")
@remote_options
def pointer_history(ref: str, registry: str, token: str | None, as_json: bool) -> None:
    """Who moved NS/MODEL[@TAG], when, from and to which CID, and why."""
    with _errors(), RegistryClient(registry, token) as client:
        name, tag = _split(ref, False)
        items = list(client.pointer_history(name, tag))
    table = _table("AT", "TAG", "FROM", "TO", "BY", "REASON")
    for h in items:
        table.add_row(
            h["at"], h["tag"], h["from_cid"] or "-", h["to_cid"] or "-", h["actor"] or "-", h["reason"] or ""
        )
    _emit(as_json, items, lambda: Console().print(table))


def __getattr__(name: str) -> Any:
    """``registry.cli.publish_cmd:token`` still resolves: the group lives in ``registry.cli.token_cmd``."""
    if name == "token":
        from registry.cli.token_cmd import token

        return token
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
