"""The webhooks component's config (from ``webhooks.*``), the event types an endpoint may subscribe to, and the
URL check: http(s) with a host on ``webhooks.allowed_hosts``, no credentials in it, no fragment."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from registry.errors import BadRequest
from registry.events.store import EVENT_TYPES

URL_MAX = 2048
# Endpoints belong to a namespace: they get the events that carry one (node, key and pin events do not).
NAMESPACE_EVENT_GROUPS = ("pack", "pointer", "replication", "policy")
WEBHOOK_EVENT_TYPES: tuple[str, ...] = tuple(
    t for t in EVENT_TYPES if t.split(".", 1)[0] in NAMESPACE_EVENT_GROUPS
)
TEST_EVENT_TYPE = "webhook.test"  # the ping `POST .../test` sends; never an outbox event


@dataclass(frozen=True)
class WebhookConfig:
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_base_s: float = 5.0
    backoff_max_s: float = 3600.0
    disable_after_failures: int = 20
    dispatch_interval_s: float = 2.0
    secret_grace_s: float = 3600.0
    max_endpoints: int = 32
    dispatch_batch: int = 500  # events read per endpoint and query
    log_retention_s: float = 30 * 86_400.0  # finished deliveries are kept this long (events.retention_s)


def _shown(url: str) -> str:
    return f"{url[:200]!r}{'...' if len(url) > 200 else ''}"


def check_url(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """The URL as given; BadRequest (naming it, bounded) unless it is http(s) with a host on the allow-list
    (``*`` allows any), without userinfo (credentials) or a fragment, and at most URL_MAX characters."""
    shown = _shown(url)
    if len(url) > URL_MAX:
        raise BadRequest(f"webhook URL {shown} is longer than {URL_MAX} characters", field="url")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  # a port out of range or not a number raises here
    except ValueError:
        raise BadRequest(f"webhook URL {shown} is not a valid URL", field="url", url=url[:200]) from None
    if parts.scheme not in ("http", "https") or not host:
        raise BadRequest(
            f"webhook URL {shown} must be http:// or https:// with a host", field="url", url=url[:200]
        )
    if "@" in parts.netloc:
        raise BadRequest(
            f"webhook URL {shown} must not carry credentials (user:password@); the receiver checks the "
            "webhook-signature header instead",
            field="url",
            url=url[:200],
            part="userinfo",
        )
    if "#" in url:
        raise BadRequest(f"webhook URL {shown} must not have a fragment", field="url", url=url[:200])
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise BadRequest(f"webhook URL {shown} has whitespace or control characters", field="url")
    if "*" not in allowed_hosts and host not in {h.lower() for h in allowed_hosts}:
        raise BadRequest(
            f"webhook host {host[:100]!r} is not in webhooks.allowed_hosts ({', '.join(allowed_hosts)[:300]})",
            field="url",
            url=url[:200],
        )
    return url


def check_event_types(types: list[str] | None) -> list[str]:
    """The types, de-duplicated in order (none given: every type an endpoint may have); BadRequest naming an
    unknown type or one that carries no namespace."""
    if not types:
        return list(WEBHOOK_EVENT_TYPES)
    for t in types:
        if t not in WEBHOOK_EVENT_TYPES:
            why = "carries no namespace" if t in EVENT_TYPES else "is not an event type"
            raise BadRequest(
                f"event type {t[:64]!r} {why}; a webhook takes {', '.join(WEBHOOK_EVENT_TYPES)}",
                field="events",
                type=t[:64],
            )
    return list(dict.fromkeys(types))
