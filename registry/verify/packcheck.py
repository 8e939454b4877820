"""Offline verification of a pack directory: signatures against a trust policy, every shard's bytes.

A directory holds ``manifest.json``, the shard files it lists, optionally detached signatures in
``signatures/*.sig.json`` and a DSSE envelope ``manifest.dsse.json``. Every failure is one line;
the pack passes only when there are none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

from multiformats import CID

from model_core.format.digest import Sha256Digest
from model_core.format.errors import InvalidManifest
from model_core.format.fields import MANIFEST_NAME, check_shard_filename
from model_core.format.pack import ManifestLimits, canonical_bytes, pack_cid_of
from model_core.format.strict_json import parse_json_strict
from registry.ipns.record import check_sequence, validate_record
from registry.packs import shardcheck
from registry.trust.dsse import verify_envelope
from registry.trust.errors import DsseError, InvalidIpnsName, IpnsRecordError, ManifestSignatureError
from registry.trust.policy import NamespacePolicy, PolicyDecision
from registry.trust.signatures import (
    ManifestSignature,
    NoTrustedTime,
    SignatureCheck,
    Verdict,
    parse_detached_signature,
    verify_manifest,
)

DSSE_NAME = "manifest.dsse.json"
SIGNATURES_DIR = "signatures"
DETACHED_SUFFIX = ".sig.json"
_FAILING = (Verdict.BAD_SIGNATURE, Verdict.REVOKED, Verdict.MALFORMED)


@dataclass(frozen=True)
class PackCheckConfig:
    manifest_max_bytes: int = 1024 * 1024
    detached_max_bytes: int = 64 * 1024
    dsse_max_bytes: int = 4 * 1024 * 1024
    check_cids: bool = True


@dataclass
class PackReport:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signatures: list[SignatureCheck] = field(default_factory=list)
    decision: PolicyDecision | None = None
    shards_checked: int = 0
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def read_manifest(directory: Path, config: PackCheckConfig = PackCheckConfig()) -> dict[str, Any]:
    """``DIR/manifest.json`` as an object, decoded as strictly as a publish decodes it (no duplicate keys,
    no NaN); the schema is not applied here, so each shard's problem gets its own line later.

    Raises:
        ManifestSignatureError: missing, too large, not strict JSON, or not a JSON object.
    """
    path = Path(directory) / MANIFEST_NAME
    try:
        with path.open("rb") as f:
            data = f.read(config.manifest_max_bytes + 1)
    except OSError as e:
        raise ManifestSignatureError(f"cannot read {path}: {e.strerror}") from None
    try:
        obj = parse_json_strict(
            data,
            max_bytes=config.manifest_max_bytes,
            max_depth=ManifestLimits().json_max_depth,
            what=str(path),
        )
    except InvalidManifest as e:
        raise ManifestSignatureError(e.message) from None
    if not isinstance(obj, dict):
        raise ManifestSignatureError(f"{path} must hold a JSON object")
    return obj


def detached_in(
    directory: Path, extra: Iterable[Path], max_bytes: int
) -> list[ManifestSignature | SignatureCheck]:
    paths = sorted((Path(directory) / SIGNATURES_DIR).glob(f"*{DETACHED_SUFFIX}")) + list(extra)
    out: list[ManifestSignature | SignatureCheck] = []
    for p in paths:
        try:
            with p.open("rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            out.append(
                SignatureCheck("", Verdict.MALFORMED, f"cannot read: {e.strerror}", f"detached:{p.name}")
            )
            continue
        out.append(parse_detached_signature(data, p.name))
    return out


def is_safe_filename(name: object) -> TypeGuard[str]:
    """The format's safe-filename rule, as a test."""
    try:
        check_shard_filename(name)
    except ValueError:
        return False
    return True


def check_shards(directory: Path, manifest: Mapping[str, Any], check_cids: bool, report: PackReport) -> None:
    """One failure line per problem, for every weight shard and every other file the manifest lists:
    unsafe name, missing file, unreadable CID or digest, and each declared size, CID and sha256 the bytes
    contradict."""
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        report.failures.append("manifest lists no shards")
        return
    files = manifest.get("files")
    files = files if isinstance(files, list) else []
    profile = manifest.get("unixfs") if isinstance(manifest.get("unixfs"), str) else None
    for what, entry in [("shard", s) for s in shards] + [("file", f) for f in files]:
        if _check_entry(directory, what, entry, profile, check_cids, report):
            if what == "shard":
                report.shards_checked += 1
            else:
                report.files_checked += 1


def _check_entry(
    directory: Path, what: str, entry: Any, profile: str | None, check_cids: bool, report: PackReport
) -> bool:
    """Check one listed file's bytes; False when they could not be checked at all."""
    name = entry.get("filename") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not is_safe_filename(name):
        report.failures.append(f"{what} {name!r}: unsafe or missing filename")
        return False
    path = Path(directory) / name
    if not path.is_file():
        report.failures.append(f"{what} {name}: file is missing")
        return False
    try:
        declared = Sha256Digest.parse(entry.get("sha256"))
    except ValueError as e:
        report.failures.append(f"{what} {name}: sha256 {e}")
        return False
    cid: CID | None = None
    entry_profile = entry.get("unixfs") if isinstance(entry.get("unixfs"), str) else profile
    if check_cids:
        try:
            cid = shardcheck.expected_cid(str(entry.get("cid")))
            shardcheck.unixfs_params(cid, entry_profile)
        except Exception as e:  # InvalidCid, or an unknown UnixFS profile
            report.failures.append(f"{what} {name}: cannot check CID {entry.get('cid')!r}: {e}")
            cid = None
    result = shardcheck.verify_file(
        path, cid=cid, sha256=declared, size=entry.get("size"), profile=entry_profile if cid else None
    )
    report.failures.extend(f"{what} {name}: {m}" for m in result.mismatches)
    return True


def verify_pack_dir(
    directory: Path,
    policy: NamespacePolicy | None,
    *,
    detached: Iterable[Path] = (),
    config: PackCheckConfig = PackCheckConfig(),
) -> PackReport:
    """Check a pack directory. With ``policy=None`` signatures are not checked (and that is a failure
    unless the caller decided to skip them; see the CLI's ``--skip-signatures``)."""
    directory = Path(directory)
    report = PackReport()
    try:
        manifest = read_manifest(directory, config)
    except ManifestSignatureError as e:
        report.failures.append(e.message)
        return report
    if policy is not None:
        _check_signatures(directory, manifest, policy, detached, config, report)
    check_shards(directory, manifest, config.check_cids, report)
    return report


def _check_signatures(
    directory: Path,
    manifest: Mapping[str, Any],
    policy: NamespacePolicy,
    detached: Iterable[Path],
    config: PackCheckConfig,
    report: PackReport,
) -> None:
    keys = policy.keyring()
    offline = NoTrustedTime()
    try:
        report.signatures = verify_manifest(
            manifest,
            keys,
            detached=detached_in(directory, detached, config.detached_max_bytes),
            signing_time=offline,
        )
    except ManifestSignatureError as e:
        report.failures.append(e.message)
    dsse_path = directory / DSSE_NAME
    if dsse_path.is_file():
        try:
            env = verify_envelope(
                dsse_path.read_bytes()[: config.dsse_max_bytes + 1], manifest, keys, offline
            )
            report.signatures.extend(env.signatures)
            report.failures.extend(env.mismatches)
        except DsseError as e:
            report.failures.append(f"{DSSE_NAME}: {e.message}")
    for c in report.signatures:
        if c.verdict is Verdict.VALID:
            continue
        line = f"signature by {c.key_id or '(no key id)'} ({c.source}): {c.verdict.value}: {c.reason}"
        (report.failures if c.verdict in _FAILING else report.notes).append(line)
    report.decision = policy.evaluate(report.signatures)
    report.failures.extend(report.decision.reasons)


def check_ipns_record(
    report: PackReport,
    manifest: Mapping[str, Any],
    name: str,
    record: bytes,
    now: datetime,
    seen_sequence: int | None = None,
) -> None:
    """The first link of the offline chain: a valid record for ``name`` that points at this manifest."""
    try:
        rec = validate_record(name, record, now)
        check_sequence(rec, seen_sequence)
    except (IpnsRecordError, InvalidIpnsName) as e:
        report.failures.append(f"IPNS record for {name}: {e.message}")
        return
    try:
        expected = CID.decode(pack_cid_of(canonical_bytes(manifest)))
    except InvalidManifest as e:
        report.failures.append(f"IPNS record for {name}: {e.message}")
        return
    target = rec.path.removeprefix("/ipfs/").rstrip("/")
    try:
        points_here = rec.path.startswith("/ipfs/") and CID.decode(target) == expected
    except Exception:  # not a CID at all
        points_here = False
    if not points_here:
        report.failures.append(
            f"IPNS record for {name} points at {rec.path}, not this manifest (/ipfs/{expected})"
        )
    else:
        report.notes.append(
            f"IPNS record for {name}: sequence {rec.sequence}, valid until {rec.expires_at.isoformat()}"
        )
