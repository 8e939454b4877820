"""The registry's webhooks API from the client side (a sibling of registry.client, on its plumbing):
``/v1/namespaces/{ns}/webhooks`` and an endpoint's deliveries."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from registry.client import RegistryClient


def _base(namespace: str) -> str:
    return f"/v1/namespaces/{quote(namespace, safe='')}/webhooks"


def add(
    client: RegistryClient, namespace: str, url: str, events: list[str], model: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events:
        body["events"] = events
    if model:
        body["model"] = model
    return dict(client._json("POST", _base(namespace), body))


def ls(client: RegistryClient, namespace: str) -> list[dict[str, Any]]:
    return list(client._json("GET", _base(namespace))["items"])


def rm(client: RegistryClient, namespace: str, hook: int) -> dict[str, Any]:
    return dict(client._json("DELETE", f"{_base(namespace)}/{hook}"))


def test(client: RegistryClient, namespace: str, hook: int) -> dict[str, Any]:
    return dict(client._json("POST", f"{_base(namespace)}/{hook}/test"))


def rotate(client: RegistryClient, namespace: str, hook: int) -> dict[str, Any]:
    return dict(client._json("POST", f"{_base(namespace)}/{hook}/rotate-secret"))


def set_enabled(client: RegistryClient, namespace: str, hook: int, enabled: bool) -> dict[str, Any]:
    return dict(client._json("PATCH", f"{_base(namespace)}/{hook}", {"enabled": enabled}))


def deliveries(
    client: RegistryClient, namespace: str, hook: int, *, limit: int, before: int | None = None
) -> dict[str, Any]:
    query = {"limit": limit, **({"before": before} if before else {})}
    return dict(client._json("GET", f"{_base(namespace)}/{hook}/deliveries?{urlencode(query)}"))


def redeliver(client: RegistryClient, namespace: str, hook: int, delivery: int) -> dict[str, Any]:
    return dict(client._json("POST", f"{_base(namespace)}/{hook}/deliveries/{delivery}/redeliver"))
