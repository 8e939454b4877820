"""A pin request and the listing filters, checked: each bad value is a 400 naming it (bounded)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pinner.cids import canonical_cid
from pinner.replication.model import Target
from registry.db.pins import PinStatus
from registry.errors import BadRequest
from registry.pinning.config import PinningConfig
from registry.pinning.multiaddrs import check_multiaddr

MATCHES = ("exact", "iexact", "partial", "ipartial")
REPLICATION_KEYS = ("replication_min", "replication_max")


def shown(value: object, limit: int = 128) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more characters]"


@dataclass(frozen=True)
class PinRequest:
    cid: str  # as sent
    cid_key: str  # normalized
    name: str | None
    origins: tuple[str, ...]
    meta: dict[str, str]


def check_cid(value: object, what: str = "cid") -> tuple[str, str]:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{what} must be a CID string, not {shown(value)}", field=what)
    # InvalidCid (400) names it: malformed, or a codec/hash we cannot verify. Decoded once: its text is the
    # normalized key (CIDv0 base58btc, CIDv1 base32), as normalize_cid spells it.
    return value, canonical_cid(value)


def check_meta(value: object, config: PinningConfig, what: str = "meta") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(f"{what} must be an object of string values, not {shown(value)}", field=what)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) > config.meta_max_chars:
        raise BadRequest(
            f"{what} is {len(text)} characters of JSON, more than {config.meta_max_chars}: {shown(value)}",
            field=what,
        )
    return dict(value)


def parse_pin(data: dict[str, Any], config: PinningConfig) -> PinRequest:
    """The body of POST /pins (or a replace), every field checked against the spec's limits."""
    unknown = sorted(set(data) - {"cid", "name", "origins", "meta"})
    if unknown:
        raise BadRequest(f"unknown pin field {shown(unknown[0], 64)!r}", field=shown(unknown[0], 64))
    cid, cid_key = check_cid(data.get("cid"))
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > config.name_max):
        raise BadRequest(
            f"name must be a string of at most {config.name_max} characters, not {shown(name)}", field="name"
        )
    origins = data.get("origins") or []
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise BadRequest(
            f"origins must be an array of multiaddr strings, not {shown(origins)}", field="origins"
        )
    if len(origins) > config.origins_max:
        raise BadRequest(
            f"origins has {len(origins)} entries, more than {config.origins_max}", field="origins"
        )
    if len(set(origins)) != len(origins):
        raise BadRequest("origins must not repeat an entry", field="origins")
    meta = check_meta(data.get("meta"), config)
    replication_target(meta, config)  # refuse bad replication_min/max now, not at placement
    return PinRequest(cid, cid_key, name, tuple(check_multiaddr(o) for o in origins), meta)


def replication_target(meta: dict[str, str], config: PinningConfig) -> Target:
    """The pin's target: meta ``replication_min``/``replication_max`` within the server's bounds."""
    values: dict[str, int] = {}
    for key in REPLICATION_KEYS:
        raw = meta.get(key)
        if raw is None:
            continue
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= config.max_replication:
            raise BadRequest(
                f"meta {key} must be an integer from 1 to {config.max_replication}, not {shown(raw, 32)!r}",
                field=f"meta.{key}",
            )
        values[key] = int(raw)
    low = values.get("replication_min", min(config.target.min, values.get("replication_max", 10**6)))
    high = values.get("replication_max", max(config.target.max, low))
    if low > high:
        raise BadRequest(f"meta replication_min ({low}) exceeds replication_max ({high})", field="meta")
    return Target(low, min(high, config.max_replication))


@dataclass(frozen=True)
class PinFilter:
    cids: tuple[str, ...] = ()  # normalized
    name: str | None = None
    match: str = "exact"
    statuses: tuple[PinStatus, ...] = ()
    before: datetime | None = None
    after: datetime | None = None
    meta: dict[str, str] | None = None
    limit: int = 10

    @property
    def unfiltered(self) -> bool:
        return not (
            self.cids or self.name is not None or self.statuses or self.before or self.after or self.meta
        )


def _listed(values: list[str]) -> list[str]:
    """A list parameter, repeated and/or comma-joined."""
    return [p for v in values for p in v.split(",") if p != ""]


def _timestamp(text: str, key: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{key} must be an RFC 3339 timestamp, not {shown(text, 64)!r}", field=key) from None
    if at.tzinfo is None:
        raise BadRequest(f"{key} must carry a time zone (e.g. Z), not {shown(text, 64)!r}", field=key)
    return at


def parse_filter(query: dict[str, list[str]], config: PinningConfig) -> PinFilter:
    """The query of GET /pins; a parameter given twice where one is meant is refused."""
    known = {"cid", "name", "match", "status", "before", "after", "limit", "meta"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise BadRequest(f"unknown query parameter {shown(unknown[0], 64)!r}", field=shown(unknown[0], 64))
    for key in ("name", "match", "before", "after", "limit", "meta"):
        if len(query.get(key, [])) > 1:
            raise BadRequest(f"query parameter {key!r} is given more than once", field=key)
    one = {k: v[0] for k, v in query.items() if v}
    cids = list(dict.fromkeys(_listed(query.get("cid", []))))
    if len(cids) > config.cid_filter_max:
        raise BadRequest(f"cid lists {len(cids)} CIDs, more than {config.cid_filter_max}", field="cid")
    keys = tuple(check_cid(c)[1] for c in cids)
    name = one.get("name")
    if name is not None and len(name) > config.name_max:
        raise BadRequest(f"name is more than {config.name_max} characters: {shown(name)!r}", field="name")
    match = one.get("match", "exact")
    if match not in MATCHES:
        raise BadRequest(f"match {shown(match, 64)!r} is not one of {', '.join(MATCHES)}", field="match")
    statuses: list[PinStatus] = []
    for s in _listed(query.get("status", [])):
        try:
            statuses.append(PinStatus(s))
        except ValueError:
            raise BadRequest(
                f"status {shown(s, 64)!r} is not one of queued, pinning, pinned, failed", field="status"
            ) from None
    limit_text = one.get("limit", str(config.limit_default))
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= config.limit_max:
        raise BadRequest(
            f"limit must be an integer from 1 to {config.limit_max}, not {shown(limit_text, 32)!r}",
            field="limit",
        )
    meta = None
    if "meta" in one:
        try:
            decoded = json.loads(one["meta"])
        except ValueError:
            raise BadRequest(
                f"meta must be a JSON object, not {shown(one['meta'])!r}", field="meta"
            ) from None
        meta = check_meta(decoded, config)
    return PinFilter(
        cids=keys,
        name=name,
        match=match,
        statuses=tuple(dict.fromkeys(statuses)),
        before=_timestamp(one["before"], "before") if "before" in one else None,
        after=_timestamp(one["after"], "after") if "after" in one else None,
        meta=meta,
        limit=int(limit_text),
    )
