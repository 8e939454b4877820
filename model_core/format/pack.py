"""Strict manifest validation under limits, RFC 8785 canonical bytes and the pack CID.

Order of checks: size, UTF-8, JSON (no duplicate keys, no NaN), depth and string lengths, shard and file
counts, key collisions, schema, then cross-field rules (file names unique across shards and files, total
size, the evaluation block against the files and the config). Each failure raises
InvalidManifest naming the field; nothing is stored before all of them pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from multiformats import CID, multihash
from pydantic import ValidationError

from model_core.format.errors import InvalidManifest, ManifestTooLarge
from model_core.format.evaluation import check_evaluation, manifest_context
from model_core.format.limits import ManifestLimits
from model_core.format.schema import KNOWN_KEYS, ManifestDoc
from model_core.format.strict_json import parse_json_strict


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """A validated manifest: the schema view, the original JSON, its canonical bytes and the pack CID."""

    doc: ManifestDoc
    data: dict[str, Any]
    canonical: bytes
    cid: str


def pack_cid_of(canonical: bytes) -> str:
    """The pack CID: CIDv1 (raw, sha2-256, base32) of the canonical bytes, as ``ipfs add --cid-version=1``
    prints it for a file of one chunk."""
    return str(CID("base32", 1, "raw", multihash.digest(canonical, "sha2-256")))


def canonical_bytes(data: Mapping[str, Any]) -> bytes:
    """The RFC 8785 (JCS) bytes of a decoded manifest; InvalidManifest when it has none (e.g. huge integers)."""
    try:
        return rfc8785.dumps(dict(data))
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as e:
        raise InvalidManifest(f"the manifest cannot be canonicalized (RFC 8785): {e}") from None


def _walk(value: Any, depth: int = 1, path: str = "") -> Iterator[tuple[int, str, Any]]:
    stack: list[tuple[Any, int, str]] = [(value, depth, path)]
    while stack:
        v, d, p = stack.pop()
        yield d, p, v
        if isinstance(v, dict):
            for k, child in v.items():
                yield d, f"{p}.{k}" if p else k, k  # keys count as strings
                stack.append((child, d + 1, f"{p}.{k}" if p else k))
        elif isinstance(v, list):
            stack.extend((child, d + 1, f"{p}[{i}]") for i, child in enumerate(v))


def _check_shape(data: Any, limits: ManifestLimits) -> None:
    for depth, path, v in _walk(data):
        if depth > limits.json_max_depth:
            raise InvalidManifest(
                f"the manifest nests deeper than {limits.json_max_depth} levels (at {path})",
                field=path,
                depth=limits.json_max_depth,
            )
        if isinstance(v, str) and len(v) > limits.string_max_len:
            raise InvalidManifest(
                f"the string at {path or '(root)'} is {len(v)} characters, more than {limits.string_max_len}",
                field=path,
            )


def _norm(key: str) -> str:
    return key.casefold().replace("_", "").replace("-", "")


def _check_collisions(data: dict[str, Any]) -> None:
    ours = {_norm(k): k for k in KNOWN_KEYS}
    for key in data:
        if key not in KNOWN_KEYS and _norm(key) in ours:
            raise InvalidManifest(
                f"the top-level key {key!r} collides with the manifest field {ours[_norm(key)]!r}; rename it",
                field=key,
            )


def _schema_error(e: ValidationError) -> InvalidManifest:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "literal_error" and loc == "format":
        return InvalidManifest(
            f"manifest format {first['input']!r} is not supported; only 'safetensors' is", field="format"
        )
    msg = first["msg"].removeprefix("Value error, ")
    return InvalidManifest(f"manifest field {loc or '(root)'}: {msg}", field=loc, errors=len(e.errors()))


def load_manifest(data: Any, limits: ManifestLimits = ManifestLimits()) -> ParsedManifest:
    """Validate a decoded manifest and compute its canonical bytes and pack CID."""
    if not isinstance(data, dict):
        raise InvalidManifest("the manifest must be a JSON object")
    _check_shape(data, limits)
    shards = data.get("shards")
    if isinstance(shards, list) and len(shards) > limits.max_shards:
        raise InvalidManifest(
            f"the manifest lists {len(shards)} shards, more than the limit of {limits.max_shards}",
            field="shards",
            count=len(shards),
        )
    files = data.get("files")
    if isinstance(files, list) and len(files) > limits.max_files:
        raise InvalidManifest(
            f"the manifest lists {len(files)} files, more than the limit of {limits.max_files}",
            field="files",
            count=len(files),
        )
    _check_collisions(data)
    try:
        doc = ManifestDoc.model_validate(data)
    except ValidationError as e:
        raise _schema_error(e) from None
    seen: set[str] = set()
    total = 0
    entries = [("shard filename", f"shards[{i}]", s) for i, s in enumerate(doc.shards)]
    entries += [("file name", f"files[{i}]", f) for i, f in enumerate(doc.files or ())]
    for what, where, entry in entries:
        if len(entry.filename) > limits.filename_max_len:
            raise InvalidManifest(
                f"{what} {entry.filename[:40]!r}... is longer than {limits.filename_max_len}",
                field=f"{where}.filename",
            )
        if entry.filename in seen:
            raise InvalidManifest(
                f"{what} {entry.filename!r} is listed twice (names are unique across shards and files)",
                field=f"{where}.filename",
            )
        seen.add(entry.filename)
        total += entry.size or 0
    if total > limits.pack_max_bytes:
        raise InvalidManifest(
            f"the pack is {total} bytes, more than the limit of {limits.pack_max_bytes}", field="shards"
        )
    if doc.evaluation is not None:
        context, vocab_size = manifest_context(doc.config)
        names = {f.filename for f in doc.files or ()}
        check_evaluation(doc.evaluation, files=names, context=context, vocab_size=vocab_size)
    canonical = canonical_bytes(data)
    if len(canonical) > limits.manifest_max_bytes:
        raise ManifestTooLarge(
            f"the canonical manifest is {len(canonical)} bytes, more than the limit of {limits.manifest_max_bytes}",
            size=len(canonical),
        )
    return ParsedManifest(doc=doc, data=data, canonical=canonical, cid=pack_cid_of(canonical))


def parse_manifest_bytes(raw: bytes, limits: ManifestLimits = ManifestLimits()) -> ParsedManifest:
    """Parse manifest bytes (a ``manifest.json``) under ``limits``."""
    data = parse_json_strict(raw, max_bytes=limits.manifest_max_bytes, max_depth=limits.json_max_depth)
    return load_manifest(data, limits)
