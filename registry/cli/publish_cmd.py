"""``modelpack publish|pull|ls|show|pointer``: the publisher's side of the registry (``token``: token_cmd).

Remote commands read ``MODELPACK_REGISTRY`` (default http://127.0.0.1:8740) and ``MODELPACK_TOKEN``.
Exit codes: 0 success; 1 the registry refused or a byte did not verify (one sentence says which); 2 usage.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

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

from registry.cli.options import connect, remote_options
from registry.cli.output import emit, errors, say, table
from registry.client import RegistryClient

MANIFEST = "manifest.json"
SIGNATURES_DIR = "signatures"
SIG_SUFFIX = ".sig.json"

if TYPE_CHECKING:
    from model_core.format.schema import ManifestDoc, ShardSpec
    from registry.packs.shardcheck import ShardCheck

remote = remote_options()


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


def _verify(path: Path, spec: ShardSpec, profile: str | None, progress: Progress) -> ShardCheck:
    """The shard verifier on ``path`` (CID, sha256 and declared size), showing hashing progress."""
    from registry.packs.shardcheck import verify_file

    task = progress.add_task(f"hashing {path.name}", total=path.stat().st_size)
    with path.open("rb") as f:
        counted: Any = _Counting(f, lambda n: progress.advance(task, n))
        check = verify_file(counted, cid=spec.cid, sha256=spec.digest, size=spec.size, profile=profile)
    progress.remove_task(task)
    return check


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
@remote
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
    from model_core.format.pack import parse_manifest_bytes
    from registry.names import check_tag, parse_model_name

    with errors():
        ref = parse_model_name(name)
        if tag:
            check_tag(tag)
        raw = (pack_dir / MANIFEST).read_bytes()
        parsed = parse_manifest_bytes(raw)
        show = not as_json and Console(stderr=True).is_terminal
        with connect(registry, token) as client, _progress(show) as progress:
            uploaded = 0
            for spec in _entries(parsed.doc):
                path = pack_dir / spec.filename
                profile = parsed.doc.profile_of(spec)
                if no_upload and not path.exists():
                    continue  # on IPFS only: the registry verifies what its nodes serve
                check = _verify(path, spec, profile, progress)
                if not check.ok:
                    raise click.ClickException(f"{path}: {check.first()}")
                if no_upload or client.blob(spec.cid) is not None:
                    continue  # already there (an earlier run, or another pack): resume by skipping it
                task = progress.add_task(f"uploading {spec.filename}", total=path.stat().st_size)

                def advance(n: int, t: TaskID = task) -> None:
                    progress.advance(t, n)

                client.upload_blob(
                    spec.cid, path, sha256=check.digest.sha256_hex, profile=profile, progress=advance
                )
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
    emit(as_json, result, lambda: say(result["cid"], note))


# --------------------------------------------------------------------------- pull


def _entries(doc: ManifestDoc) -> list[ShardSpec]:
    """What a pack folder holds besides the manifest: the weight shards, then the other files."""
    return [*doc.shards, *(doc.files or ())]


def _resolve(client: RegistryClient, text: str) -> str:
    from registry.names import parse_ref

    ref = parse_ref(text)
    if ref.cid is not None:
        return ref.cid
    assert ref.model is not None
    return str(client.resolve(str(ref.model), ref.tag)["cid"])


def _temp_in(folder: Path, name: str) -> tuple[BinaryIO, Path]:
    """A new file in ``folder`` under an unpredictable name, created with O_EXCL (never through a symlink)."""
    fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    return os.fdopen(fd, "wb"), Path(path)


def _write_atomic(path: Path, data: bytes) -> None:
    f, tmp = _temp_in(path.parent, path.name)
    try:
        with f:
            f.write(data)
        os.replace(tmp, path)  # replaces a symlink at ``path`` itself, never its target
    finally:
        tmp.unlink(missing_ok=True)


@click.command()
@click.argument("ref")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@remote
def pull(ref: str, dest: Path, registry: str, token: str | None, as_json: bool) -> None:
    """Download NS/MODEL[@TAG] or a pack CID into DEST, verifying every byte (CID and sha256)."""
    from model_core.format.limits import MANIFEST_MAX_BYTES
    from model_core.format.pack import (
        ManifestLimits,
        pack_cid_of,
        parse_manifest_bytes,
    )

    with errors(), connect(registry, token) as client:
        cid = _resolve(client, ref)
        raw = client.manifest_bytes(cid, limit=MANIFEST_MAX_BYTES)
        if pack_cid_of(raw) != cid:
            raise click.ClickException(
                f"the manifest served for {cid} hashes to {pack_cid_of(raw)}; refusing it"
            )
        parsed = parse_manifest_bytes(raw)
        dest.mkdir(parents=True, exist_ok=True)
        show = not as_json and Console(stderr=True).is_terminal
        fetched = 0
        with _progress(show) as progress:
            for spec in _entries(parsed.doc):
                final = dest / spec.filename
                profile = parsed.doc.profile_of(spec)
                if not final.is_symlink() and final.is_file() and _verify(final, spec, profile, progress).ok:
                    continue  # already here and intact
                budget = spec.size if spec.size is not None else ManifestLimits().pack_max_bytes
                f, tmp = _temp_in(dest, spec.filename)
                try:
                    task = progress.add_task(f"downloading {spec.filename}", total=spec.size)
                    with f:
                        got = 0
                        for chunk in client.stream_shard(cid, spec.filename):
                            got += len(chunk)
                            if got > budget:
                                raise click.ClickException(
                                    f"{spec.filename}: the registry sent more than the {budget} bytes "
                                    "the manifest allows; refusing it"
                                )
                            f.write(chunk)
                            progress.advance(task, len(chunk))
                        f.flush()
                        os.fsync(f.fileno())
                    progress.remove_task(task)
                    check = _verify(tmp, spec, profile, progress)
                    if not check.ok:
                        raise click.ClickException(f"{spec.filename}: downloaded bytes: {check.first()}")
                    os.replace(tmp, final)
                    fetched += 1
                finally:
                    tmp.unlink(missing_ok=True)
        _write_atomic(dest / MANIFEST, raw)
    data = {
        "cid": cid,
        "dir": str(dest),
        "shards": len(parsed.doc.shards),
        "files": len(parsed.doc.files or ()),
        "downloaded": fetched,
    }
    emit(as_json, data, lambda: click.echo(f"{cid} -> {dest} ({fetched} file(s) downloaded, all verified)"))


# --------------------------------------------------------------------------- ls / show


@click.command()
@click.argument("where", required=False)
@click.option("--prefix", help="Only models whose name starts with this.")
@remote
def ls(where: str | None, prefix: str | None, registry: str, token: str | None, as_json: bool) -> None:
    """List models (of namespace NS), or the versions of NS/MODEL."""
    console = Console()
    with errors(), connect(registry, token) as client:
        if where and "/" in where:
            from registry.names import parse_model_name

            items = list(client.versions(str(parse_model_name(where))))
            grid = table("CID", "VERSION", "STATE", "SIZE", "CREATED")
            for p in items:
                grid.add_row(p["cid"], p["model_version"], p["state"], str(p["total_size"]), p["created_at"])
        else:
            items = list(client.models(where, prefix))
            grid = table("MODEL", "CREATED")
            for m in items:
                grid.add_row(f"{m['namespace']}/{m['name']}", m["created_at"])
    emit(as_json, items, lambda: console.print(grid))


@click.command()
@click.argument("ref")
@remote
def show(ref: str, registry: str, token: str | None, as_json: bool) -> None:
    """Show a pack (NS/MODEL[@TAG] or CID): state, shards, signatures, pointers."""
    with errors(), connect(registry, token) as client:
        from registry.names import parse_ref

        parsed = parse_ref(ref)
        detail = client.pack(_resolve(client, ref), model=None if parsed.model is None else str(parsed.model))

    def human() -> None:
        c = Console()
        c.print(
            f"[bold]{detail['namespace']}/{detail['model']}[/bold] {detail['model_version']}  {detail['cid']}"
        )
        c.print(
            f"state: {detail['state']}   size: {detail['total_size']} bytes   pointers: "
            f"{', '.join(detail['pointers']) or '-'}"
        )
        shards = table("FILE", "CID", "SHA256", "SIZE")
        for s in detail["shards"]:
            shards.add_row(s["filename"], s["cid"], s["sha256"][:23] + "...", str(s["size"]))
        c.print(shards)
        if detail["signatures"]:
            sigs = table("KEY", "KIND", "VERDICT")
            for g in detail["signatures"]:
                sigs.add_row(g["key_id"], g["kind"], g["verdict"])
            c.print(sigs)

    emit(as_json, detail, human)


# --------------------------------------------------------------------------- pointer


@click.group()
def pointer() -> None:
    """Read and move pointers (NS/MODEL@TAG -> pack CID)."""


def _split(text: str, need_tag: bool) -> tuple[str, str | None]:
    from registry.names import check_tag, parse_model_name

    name, _, tag = text.partition("@")
    ref = parse_model_name(name)
    if need_tag and not tag:
        raise click.BadParameter(f"{text!r} needs a tag: NS/MODEL@TAG")
    return str(ref), check_tag(tag) if tag else None


@pointer.command("get")
@click.argument("ref")
@remote
def pointer_get(ref: str, registry: str, token: str | None, as_json: bool) -> None:
    """Print the CID NS/MODEL@TAG points at (tag defaults to latest)."""
    with errors(), connect(registry, token) as client:
        name, tag = _split(ref, False)
        p = client.resolve(name, tag or "latest")
    emit(as_json, p, lambda: click.echo(p["cid"]))


@pointer.command("set")
@click.argument("ref")
@click.argument("cid")
@click.option("--expect", help="Move only if the pointer still holds this CID (compare-and-swap).")
@click.option("--reason", help="Why (kept in the history).")
@remote
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
    with errors(), connect(registry, token) as client:
        name, tag = _split(ref, True)
        assert tag is not None
        p = client.set_pointer(name, tag, cid, expected=expect, reason=reason)
    emit(as_json, p, lambda: click.echo(f"{name}@{tag} -> {p['cid']}"))


@pointer.command("history")
@click.argument("ref")
@remote
def pointer_history(ref: str, registry: str, token: str | None, as_json: bool) -> None:
    """Who moved NS/MODEL[@TAG], when, from and to which CID, and why."""
    with errors(), connect(registry, token) as client:
        name, tag = _split(ref, False)
        items = list(client.pointer_history(name, tag))
    grid = table("AT", "TAG", "FROM", "TO", "BY", "REASON")
    for h in items:
        grid.add_row(
            h["at"], h["tag"], h["from_cid"] or "-", h["to_cid"] or "-", h["actor"] or "-", h["reason"] or ""
        )
    emit(as_json, items, lambda: Console().print(grid))
