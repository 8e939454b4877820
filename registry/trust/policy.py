"""Trust policy: per namespace, which keys are trusted and how many signatures curation needs.

The registry stores one ``NamespacePolicy`` per namespace; the same structure is a file for fully
offline verification (``modelpack verify DIR --trust-policy FILE``), in JSON or TOML::

    version = 1
    [namespaces.acme]
    required_signatures = 1            # distinct trusted keys with a valid signature (default 1)
    publishers = ["alice"]             # registry only: every key these publishers registered
    [[namespaces.acme.keys]]
    public_key = "base64 of the raw 32 bytes, or a PEM block"
    key_id = "ed25519:..."             # optional; checked against public_key
    label = "release bot"              # optional
    revoked_at = "2026-03-01T00:00:00Z"  # optional

The namespace ``"*"`` applies to namespaces not listed.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from registry.trust.errors import BadPublicKey, PolicyError
from registry.trust.keys import PublicKey, parse_public_key
from registry.trust.signatures import KnownKey, SignatureCheck, Verdict

POLICY_VERSION = 1
WILDCARD = "*"
MAX_REQUIRED = 64
POLICY_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TrustedKey:
    public_key: PublicKey
    label: str = ""
    revoked_at: datetime | None = None

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def known(self) -> KnownKey:
        return KnownKey(self.public_key, self.revoked_at)


@dataclass(frozen=True)
class PolicyDecision:
    """Whether a pack's signatures satisfy a namespace's policy, and why not."""

    satisfied: bool
    trusted_valid: tuple[str, ...]
    required: int
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamespacePolicy:
    keys: tuple[TrustedKey, ...] = ()
    publishers: tuple[str, ...] = ()
    required_signatures: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.required_signatures <= MAX_REQUIRED:
            raise PolicyError(
                f"required_signatures must be between 1 and {MAX_REQUIRED}, got {self.required_signatures}"
            )

    def keyring(self) -> dict[str, KnownKey]:
        return {k.key_id: k.known() for k in self.keys}

    def evaluate(
        self, checks: Iterable[SignatureCheck], publisher_key_ids: Iterable[str] = ()
    ) -> PolicyDecision:
        """Count distinct trusted keys with a valid signature.

        ``publisher_key_ids``: the registry's keys of ``self.publishers`` (a file cannot resolve them).
        """
        trusted = {k.key_id for k in self.keys} | set(publisher_key_ids)
        valid = sorted({c.key_id for c in checks if c.verdict is Verdict.VALID and c.key_id in trusted})
        reasons: tuple[str, ...] = ()
        if len(valid) < self.required_signatures:
            reasons = (
                f"{len(valid)} valid signature(s) by trusted keys; the policy requires "
                f"{self.required_signatures}",
            )
        return PolicyDecision(
            len(valid) >= self.required_signatures, tuple(valid), self.required_signatures, reasons
        )


@dataclass(frozen=True)
class TrustPolicy:
    namespaces: Mapping[str, NamespacePolicy] = field(default_factory=dict)

    def for_namespace(self, namespace: str | None) -> NamespacePolicy | None:
        """The namespace's policy, else the ``"*"`` one; with no namespace, the only one there is."""
        if namespace is None:
            if len(self.namespaces) == 1:
                return next(iter(self.namespaces.values()))
            return self.namespaces.get(WILDCARD)
        return self.namespaces.get(namespace) or self.namespaces.get(WILDCARD)


def _parse_time(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise PolicyError(f"{where}.revoked_at {value!r} is not an ISO 8601 time") from None
    else:
        raise PolicyError(f"{where}.revoked_at must be a time string")
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _parse_key(obj: object, where: str) -> TrustedKey:
    if isinstance(obj, str):
        obj = {"public_key": obj}
    if not isinstance(obj, dict):
        raise PolicyError(f"{where} must be a table with public_key")
    unknown = set(obj) - {"public_key", "key_id", "label", "revoked_at"}
    if unknown:
        raise PolicyError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")
    try:
        pk = parse_public_key(str(obj.get("public_key", "")))
    except BadPublicKey as e:
        raise PolicyError(f"{where}.public_key: {e.message}") from None
    if "key_id" in obj and obj["key_id"] != pk.key_id:
        raise PolicyError(f"{where}.key_id {obj['key_id']!r} is not the id of its public_key ({pk.key_id})")
    return TrustedKey(pk, str(obj.get("label", "")), _parse_time(obj.get("revoked_at"), where))


def _parse_namespace(name: str, obj: object) -> NamespacePolicy:
    where = f"namespaces.{name}"
    if not isinstance(obj, dict):
        raise PolicyError(f"{where} must be a table")
    unknown = set(obj) - {"keys", "publishers", "required_signatures"}
    if unknown:
        raise PolicyError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")
    keys = obj.get("keys", [])
    pubs = obj.get("publishers", [])
    req = obj.get("required_signatures", 1)
    if not isinstance(keys, list) or not isinstance(pubs, list) or not all(isinstance(p, str) for p in pubs):
        raise PolicyError(f"{where}.keys and .publishers must be lists")
    if not isinstance(req, int) or isinstance(req, bool):
        raise PolicyError(f"{where}.required_signatures must be an integer")
    return NamespacePolicy(
        keys=tuple(_parse_key(k, f"{where}.keys[{i}]") for i, k in enumerate(keys)),
        publishers=tuple(pubs),
        required_signatures=req,
    )


def parse_policy(obj: Mapping[str, Any]) -> TrustPolicy:
    """A policy from its JSON/TOML object form.

    Raises:
        PolicyError: naming the bad field.
    """
    if obj.get("version", POLICY_VERSION) != POLICY_VERSION:
        raise PolicyError(f"trust policy version {obj.get('version')!r} is not supported (use 1)")
    unknown = set(obj) - {"version", "namespaces"}
    if unknown:
        raise PolicyError(f"trust policy has unknown field(s) {', '.join(sorted(unknown))}")
    namespaces = obj.get("namespaces", {})
    if not isinstance(namespaces, dict) or not namespaces:
        raise PolicyError("trust policy must list at least one namespace under 'namespaces'")
    return TrustPolicy({str(n): _parse_namespace(str(n), v) for n, v in namespaces.items()})


def load_policy(path: Path) -> TrustPolicy:
    """Read a policy file: TOML when it ends in ``.toml``, else JSON."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PolicyError(f"cannot read trust policy {path}: {e.strerror}") from None
    if len(data) > POLICY_MAX_BYTES:
        raise PolicyError(f"trust policy {path} is larger than {POLICY_MAX_BYTES} bytes")
    try:
        obj = tomllib.loads(data.decode()) if path.suffix == ".toml" else json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PolicyError(f"trust policy {path} does not parse: {e}") from None
    if not isinstance(obj, dict):
        raise PolicyError(f"trust policy {path} must be an object")
    return parse_policy(obj)


def policy_to_json(policy: TrustPolicy) -> dict[str, Any]:
    """The object form ``parse_policy`` reads (what the registry stores per namespace)."""
    return {
        "version": POLICY_VERSION,
        "namespaces": {
            name: {
                "required_signatures": ns.required_signatures,
                "publishers": list(ns.publishers),
                "keys": [
                    {
                        "key_id": k.key_id,
                        "public_key": k.public_key.b64,
                        "label": k.label,
                        **({"revoked_at": k.revoked_at.isoformat()} if k.revoked_at else {}),
                    }
                    for k in ns.keys
                ],
            }
            for name, ns in policy.namespaces.items()
        },
    }
