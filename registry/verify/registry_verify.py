"""``modelpack verify`` against a registry: IPNS record -> manifest -> signatures -> every shard's bytes.

Nothing the registry says is taken on trust except what the user chose to trust: the record is
checked with its name's key, its sequence against the ones seen before (a local state file), the
manifest against the CID the record names, signatures against a policy (the registry's, or a file),
and every shard's sha256 and CID against the downloaded bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multiformats import CID

from model_core.format.errors import InvalidManifest
from model_core.format.pack import ManifestLimits, canonical_bytes, pack_cid_of
from model_core.format.strict_json import parse_json_strict
from registry.client import ClientError, RegistryClient
from registry.ipns.name import parse_ipns_name
from registry.ipns.record import MAX_RECORD_BYTES, validate_record
from registry.trust.errors import InvalidIpnsName, IpnsRecordError, ManifestSignatureError, TrustError
from registry.trust.keys import write_atomically
from registry.trust.policy import NamespacePolicy, load_policy, parse_policy
from registry.trust.signatures import (
    ManifestSignature,
    NoTrustedTime,
    RecordedReceiptTimes,
    SigningTimeSource,
    Verdict,
    verify_manifest,
)
from registry.verify.packcheck import PackReport, check_shards, is_safe_filename

MANIFEST_MAX_BYTES = 16 * 1024 * 1024
NAMESPACE_REQUIRED = (
    "--trust-policy with a pack CID or an IPNS name needs --namespace NS: the namespace whose policy "
    "applies must come from you, not from the registry being checked"
)
_FAILING = (Verdict.BAD_SIGNATURE, Verdict.REVOKED, Verdict.MALFORMED)


# --------------------------------------------------------------------------- seen sequences


def default_state_file() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "modelpack" / "ipns-seen.json"


@dataclass
class SeenState:
    """What this machine has accepted before: the highest IPNS sequence (and its value) per name (rollback
    protection), and per registry the IPNS name of each channel, pinned on first use (``channels``)."""

    path: Path
    names: dict[str, dict[str, Any]]
    channels: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> SeenState:
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return cls(path, {})
        except (OSError, ValueError) as e:
            raise TrustError(f"state file {path} cannot be read: {e}") from None
        names = data.get("names") if isinstance(data, dict) else None
        channels = data.get("channels", {}) if isinstance(data, dict) else None
        if not isinstance(names, dict) or not isinstance(channels, dict):
            raise TrustError(f"state file {path} is not a modelpack seen-sequence file")
        if not all(isinstance(v, dict) for v in channels.values()):
            raise TrustError(f"state file {path} has a malformed 'channels' section")
        return cls(path, names, channels)

    def check_pin(self, registry: str, channel: str, name: str) -> str | None:
        """A failure line when ``channel`` of ``registry`` was pinned to another IPNS name than ``name``."""
        pinned = self.channels.get(registry, {}).get(channel)
        try:
            name = parse_ipns_name(name).canonical  # the peer-id form of the pinned name is the same name
        except InvalidIpnsName:
            pass
        if not isinstance(pinned, dict) or pinned.get("name") == name:
            return None
        return (
            f"the registry now says channel {channel} is IPNS name {name}, but this machine pinned it to "
            f"{pinned.get('name')} on first use ({pinned.get('pinned_at')}); a channel's name never changes, "
            f"so the registry (or someone between) may be serving another key's records. If the change is "
            f"expected, remove the entry for {channel} under 'channels' in {self.path}"
        )

    def pin(self, registry: str, channel: str, name: str) -> None:
        """Remember ``channel``'s IPNS name at ``registry`` if none is pinned yet."""
        pins = self.channels.setdefault(registry, {})
        if channel not in pins:
            pins[channel] = {"name": name, "pinned_at": datetime.now(UTC).isoformat()}
            self._save()

    def check(self, name: str, sequence: int, value: str) -> str | None:
        """A failure line when ``sequence`` is older than seen, or equal with another value."""
        seen = self.names.get(name)
        if not isinstance(seen, dict) or not isinstance(seen.get("sequence"), int):
            return None
        if sequence < seen["sequence"]:
            return (
                f"IPNS record for {name} has sequence {sequence}, older than {seen['sequence']} seen before "
                "(a rolled-back or replayed record)"
            )
        if sequence == seen["sequence"] and value != seen.get("value"):
            return f"IPNS record for {name} has sequence {sequence} seen before with another value ({seen.get('value')})"
        return None

    def remember(self, name: str, sequence: int, value: str) -> None:
        seen = self.names.get(name)
        if isinstance(seen, dict) and isinstance(seen.get("sequence"), int) and seen["sequence"] >= sequence:
            return
        self.names[name] = {"sequence": sequence, "value": value, "seen_at": datetime.now(UTC).isoformat()}
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": 1, "names": self.names, "channels": self.channels}
        write_atomically(self.path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), 0o600)


# --------------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class Target:
    kind: str  # channel | ipns | cid
    text: str
    namespace: str | None = None
    model: str | None = None
    tag: str | None = None


def classify(target: str) -> Target:
    """NS/MODEL@TAG, an IPNS name (k51... or 12D3KooW...), or a pack CID.

    Raises:
        ValueError: none of these.
    """
    if "/" in target and "@" in target and not target.startswith("/"):
        name, _, tag = target.rpartition("@")
        ns, _, model = name.partition("/")
        if ns and model and tag and "/" not in model:
            return Target("channel", target, ns, model, tag)
    text = target.removeprefix("/ipns/")
    try:
        cid = CID.decode(text)
        if cid.codec.name != "libp2p-key":
            return Target("cid", str(cid))
    except Exception:  # multiformats raises several unrelated types for non-CIDs
        pass
    try:
        return Target("ipns", parse_ipns_name(text).canonical)
    except InvalidIpnsName:
        pass
    raise ValueError(f"{target!r} is not NS/MODEL@CHANNEL, an IPNS name, a pack CID or a directory")


def _record_target(
    client: RegistryClient, name: str, state: SeenState, report: PackReport, channel: str | None = None
) -> str | None:
    """Fetch, validate and sequence-check the record (and pin ``channel``'s name on first use); the pack
    CID it names, or None after a failure (a withdrawal record included)."""
    if channel is not None:
        moved = state.check_pin(client.base_url, channel, name)
        if moved:
            report.failures.append(moved)
            return None
    raw = client.ipns_record(name, limit=MAX_RECORD_BYTES)
    try:
        rec = validate_record(name, raw, datetime.now(UTC))
    except (IpnsRecordError, InvalidIpnsName) as e:
        report.failures.append(f"IPNS record for {name}: {e.message}")
        return None
    stale = state.check(rec.name, rec.sequence, rec.path)
    if stale:
        report.failures.append(stale)
        return None
    if channel is not None:
        state.pin(client.base_url, channel, rec.name)
    state.remember(rec.name, rec.sequence, rec.path)
    report.notes.append(
        f"IPNS record for {rec.name}: sequence {rec.sequence}, valid until {rec.expires_at.isoformat()}, {rec.path}"
    )
    if rec.withdrawn:
        report.failures.append(
            f"channel {channel or rec.name} was withdrawn: the registry signed (sequence {rec.sequence}) that it "
            "no longer stands behind any pack for it (un-curated, or no longer fit with nothing to roll back to)"
        )
        return None
    target = rec.path.removeprefix("/ipfs/").rstrip("/")
    try:
        if not rec.path.startswith("/ipfs/"):
            raise ValueError("not an /ipfs/ path")
        return str(CID.decode(target))
    except Exception:  # anything that is not /ipfs/<CID>
        report.failures.append(f"IPNS record for {rec.name} points at {rec.path}, not /ipfs/<pack CID>")
        return None


def _manifest(client: RegistryClient, cid: str, report: PackReport) -> dict[str, Any] | None:
    raw = client.manifest_bytes(cid, limit=MANIFEST_MAX_BYTES)
    got = pack_cid_of(raw)
    if CID.decode(got) != CID.decode(cid):
        report.failures.append(f"manifest bytes have CID {got}, not {cid}")
        return None
    try:
        doc = parse_json_strict(
            raw,
            max_bytes=MANIFEST_MAX_BYTES,
            max_depth=ManifestLimits().json_max_depth,
            what=f"manifest {cid}",
        )
        canonical = isinstance(doc, dict) and canonical_bytes(doc) == raw
    except InvalidManifest as e:
        report.failures.append(e.message)
        return None
    if not canonical:
        report.failures.append(f"manifest {cid} is not an RFC 8785 canonical JSON object")
        return None
    return doc


def _registry_signatures(trust: Any) -> tuple[list[ManifestSignature], dict[tuple[str, bytes], datetime]]:
    detached, times = [], {}
    for s in trust.get("signatures", []) if isinstance(trust, dict) else []:
        try:
            sig = base64.b64decode(s["signature"], validate=True)
            at = datetime.fromisoformat(str(s["received_at"]).replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError, binascii.Error):
            continue
        times[(str(s.get("key_id")), sig)] = at
        if s.get("kind") == "detached":
            detached.append(ManifestSignature(str(s["key_id"]), sig, source="detached:registry"))
    return detached, times


def _check_signatures(
    manifest: dict[str, Any],
    policy: NamespacePolicy,
    detached: list[ManifestSignature],
    signing_time: SigningTimeSource,
    report: PackReport,
) -> None:
    try:
        report.signatures = verify_manifest(
            manifest, policy.keyring(), detached=detached, signing_time=signing_time
        )
    except ManifestSignatureError as e:
        report.failures.append(e.message)
    for c in report.signatures:
        if c.verdict is not Verdict.VALID:
            line = f"signature by {c.key_id or '(no key id)'} ({c.source}): {c.verdict.value}: {c.reason}"
            (report.failures if c.verdict in _FAILING else report.notes).append(line)
    report.decision = policy.evaluate(report.signatures)
    report.failures.extend(report.decision.reasons)


def _download(client: RegistryClient, cid: str, name: str, dest: Path) -> None:
    chunks = client.stream_shard(cid, name)
    first = next(chunks, b"")  # sends the request: a refusal leaves no file behind
    with dest.open("wb") as f:
        f.write(first)
        for chunk in chunks:
            f.write(chunk)


def _download_and_check(
    client: RegistryClient, cid: str, manifest: dict[str, Any], report: PackReport
) -> None:
    with tempfile.TemporaryDirectory(prefix="modelpack-verify-") as tmp:
        work = Path(tmp)
        listed = [("shard", e) for e in manifest.get("shards") or []]
        listed += [("file", e) for e in manifest.get("files") or []]
        for what, entry in listed:
            name = entry.get("filename") if isinstance(entry, dict) else None
            if not is_safe_filename(name):
                continue  # check_shards reports it
            try:
                _download(client, cid, name, work / name)
            except ClientError as e:
                report.failures.append(f"{what} {name}: {e.describe()}")
        check_shards(work, manifest, True, report)


def verify_remote(
    client: RegistryClient,
    target: Target,
    *,
    policy_file: Path | None,
    namespace: str | None,
    state: SeenState,
) -> PackReport:
    """Run the whole chain for ``target``; ClientError when the registry cannot answer a step."""
    if policy_file is not None and not (namespace or target.namespace):
        raise TrustError(NAMESPACE_REQUIRED)
    report = PackReport()
    cid: str | None
    if target.kind == "channel":
        ch = client.channel(target.namespace or "", target.model or "", target.tag or "")
        channel = f"{target.namespace}/{target.model}@{target.tag}"
        cid = _record_target(client, str(ch.get("name", "")), state, report, channel)
    elif target.kind == "ipns":
        cid = _record_target(client, target.text, state, report)
    else:
        cid = target.text
    if cid is None:
        return report
    manifest = _manifest(client, cid, report)
    if manifest is None:
        return report
    # a channel names its model: that model's listing of the CID
    model = f"{target.namespace}/{target.model}" if target.kind == "channel" else None
    detail = client.pack(cid, model=model)
    ns = namespace or target.namespace or str(detail.get("namespace"))
    trust = client.trust(cid, model=model)
    detached, times = _registry_signatures(trust)
    if policy_file is not None:
        ns_policy = load_policy(policy_file).for_namespace(ns)
        signing_time: SigningTimeSource = NoTrustedTime()  # offline: nobody vouches for signing times
    else:
        ns_policy = parse_policy(client.policy_file(ns)).for_namespace(ns)
        signing_time = RecordedReceiptTimes(times)  # the registry's receipt times, as the registry judges
    if ns_policy is None:
        report.failures.append(f"the trust policy has no entry for namespace {ns!r} (and no '*')")
    else:
        _check_signatures(manifest, ns_policy, detached, signing_time, report)
    _download_and_check(client, cid, manifest, report)
    report.notes.append(f"pack {cid} ({ns}/{detail.get('model')} {detail.get('model_version')})")
    return report
