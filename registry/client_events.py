"""The registry's event feed from the client side: pages of ``GET /v1/events`` and the SSE stream
``GET /v1/events/stream`` parsed into events (a sibling of registry.client, on its connection plumbing)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlencode

from registry.client import ClientError, RegistryClient

FRAME_MAX_BYTES = 64 * 1024  # one SSE line; the server's events are far smaller


def _query(after: int | None, types: Sequence[str], namespace: str | None, **more: Any) -> str:
    params: dict[str, Any] = {k: v for k, v in more.items() if v is not None}
    if after is not None:
        params["after"] = after
    if types:
        params["type"] = ",".join(types)
    if namespace:
        params["namespace"] = namespace
    return f"?{urlencode(params)}" if params else ""


def events_page(
    client: RegistryClient,
    *,
    after: int | None = None,
    types: Sequence[str] = (),
    namespace: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """One page: ``{"items": [...], "next_after": id}``."""
    page: dict[str, Any] = client._json("GET", "/v1/events" + _query(after, types, namespace, limit=limit))
    return page


def follow(
    client: RegistryClient, *, after: int | None, types: Sequence[str] = (), namespace: str | None = None
) -> Iterator[dict[str, Any]]:
    """Events as the registry streams them, from ``after`` (None: from now); reconnects with the last id
    when the server ends the stream (a slow reader is cut off) and stops only on an error."""
    last = after
    while True:
        headers = {"Accept": "text/event-stream"}
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        resp = client._send("GET", "/v1/events/stream" + _query(None, types, namespace), headers=headers)
        try:
            for event in _frames(resp):
                last = int(event["id"])
                yield event
        finally:
            client.close()


def _frames(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    data: list[str] = []
    while True:
        try:
            raw = resp.readline(FRAME_MAX_BYTES + 1)
        except (OSError, http.client.HTTPException) as e:
            raise ClientError(f"the event stream broke off: {e!r}") from None
        if not raw:
            return  # the server ended the stream
        if len(raw) > FRAME_MAX_BYTES:
            raise ClientError(f"an event stream line is longer than {FRAME_MAX_BYTES} bytes")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            try:
                doc = json.loads("\n".join(data))
            except ValueError:
                raise ClientError("the event stream sent an event that is not JSON") from None
            data = []
            if isinstance(doc, dict) and "id" in doc:
                yield doc
