"""``import_hf``: a local Hugging Face snapshot folder as a ModelPack folder, files byte-for-byte.

The snapshot is checked completely first (:mod:`model_core.importers.hf_snapshot`); then every file is
hard-linked (or copied, across file systems) into a staging folder beside ``out``, hashed there (CID,
sha256, size, by the caller's ``digest_of``: UnixFS CIDs are the pinner's, which model_core may not
import), the manifest written (layout ``hf-llama``, weight files under ``shards``, every other file
under ``files``), and the staging folder renamed to ``out``. A refusal leaves ``out`` as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_core.format.fields import MANIFEST_NAME
from model_core.format.pack import load_manifest
from model_core.importers.hf_snapshot import (
    CONFIG,
    TOKENIZER,
    HFImportRefused,
    Snapshot,
    read_snapshot,
    readme_license,
)
from model_core.layouts import HF_LLAMA

GENERATOR = "modelpack import hf"


@dataclass(frozen=True)
class FileDigest:
    """What a manifest says of one file: its UnixFS CID (``ipfs add --cid-version 1``), sha256 and size."""

    cid: str
    sha256: str  # "sha256:<64 hex>"
    size: int


DigestFn = Callable[[Path], FileDigest]
LogFn = Callable[[str], None]


def import_hf(
    src: Path,
    out: Path,
    *,
    name: str,
    version: str | None = None,
    digest_of: DigestFn,
    log: LogFn | None = None,
    evaluation: dict[str, Any] | None = None,
    generator: str = GENERATOR,
) -> Path:
    """Write a pack folder at ``out`` (absent or empty) from the snapshot in ``src``; returns its manifest path.

    ``version`` defaults to ``hf-`` and 12 hex digits of a hash of every file's sha256, so importing the
    same snapshot twice gives the same version. ``evaluation`` becomes the manifest's ``evaluation`` block
    (checked like any manifest's before anything is written); ``generator`` is its ``provenance.generator``.

    Raises:
        HFImportRefused, ConfigInvalid, PackInvalid, InvalidManifest: one sentence naming the file and the field or tensor.
    """
    src, out = Path(src), Path(out)
    say = log or (lambda _msg: None)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HFImportRefused(f"{out} already exists and is not an empty folder; choose a new OUT")
    snap = read_snapshot(src)
    if snap.ignored_keys:
        say(f"note: {CONFIG} keys the core ignores: {', '.join(snap.ignored_keys)}")
    for skipped in snap.skipped:
        say(f"note: not in the pack: {skipped}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".import", dir=out.parent))
    try:
        shards = [_place(snap.src / f, staging / f, digest_of, say) for f in snap.shards]
        files = [_place(snap.src / f, staging / f, digest_of, say) for f in snap.files]
        manifest = build_manifest(snap, shards, files, name=name, version=version, generator=generator)
        if evaluation is not None:
            manifest["evaluation"] = evaluation
        load_manifest(manifest)  # the importer's own output, and the evaluation block, as publish checks them
        with (staging / MANIFEST_NAME).open("w", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _default_dir_permissions(staging)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"wrote {out / MANIFEST_NAME}: {name}, {len(shards)} weight file(s), {len(files)} other file(s)")
    return out / MANIFEST_NAME


def build_manifest(
    snap: Snapshot,
    shards: list[dict[str, Any]],
    files: list[dict[str, Any]],
    *,
    name: str,
    version: str | None,
    generator: str = GENERATOR,
) -> dict[str, Any]:
    """The manifest of an imported snapshot (entries as ``{filename, cid, sha256, size}``)."""
    if version is None:
        h = hashlib.sha256()
        for entry in sorted(shards + files, key=lambda e: e["filename"]):
            h.update(f"{entry['filename']}\0{entry['sha256']}\n".encode())
        version = "hf-" + h.hexdigest()[:12]
    archs = snap.hf_config.get("architectures") or [snap.hf_config.get("model_type")]
    provenance: dict[str, Any] = {"generator": generator, "architecture": str(archs[0])}
    if isinstance(snap.hf_config.get("transformers_version"), str):
        provenance["transformers_version"] = snap.hf_config["transformers_version"]
    manifest: dict[str, Any] = {
        "format": "safetensors",
        "layout": HF_LLAMA,
        "model_name": name,
        "model_version": version,
        "config": snap.config.to_dict(),
        "shards": shards,
        "files": files,
        "provenance": provenance,
    }
    by_name = {e["filename"]: e for e in files}
    if TOKENIZER in by_name:
        manifest["tokenizer"] = {"type": "huggingface", "file": TOKENIZER, "cid": by_name[TOKENIZER]["cid"]}
    if "README.md" in by_name and (found := readme_license(snap.src / "README.md")):
        manifest["license"] = found
    return manifest


def _place(source: Path, dest: Path, digest_of: DigestFn, say: LogFn) -> dict[str, Any]:
    """Hard-link (or copy) ``source`` to ``dest`` and describe the placed file."""
    try:
        os.link(source.resolve(), dest)
    except OSError:  # another file system, or links not allowed: copy the bytes
        say(f"copying {source.name} (cannot hard-link it)")
        shutil.copyfile(source, dest)
    d = digest_of(dest)
    return {"filename": dest.name, "cid": d.cid, "sha256": d.sha256, "size": d.size}


def _default_dir_permissions(folder: Path) -> None:
    """mkdtemp's 0700 -> what a plain mkdir gives under the umask (linked files keep their own modes)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    (folder / MANIFEST_NAME).chmod(0o666 & ~umask)


__all__ = ["DigestFn", "FileDigest", "HFImportRefused", "build_manifest", "import_hf"]
