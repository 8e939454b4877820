"""The one blocking HTTP client of the registry API, for every CLI command, ``verify`` and ``gate``.

Keep-alive, streamed bodies both ways, bounded reads where a hostile registry could send too much.
Errors come back as ``ClientError`` carrying the HTTP status, the server's stable ``code`` and its
one-sentence message.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from registry.errors import RegistryError

DEFAULT_REGISTRY = "http://127.0.0.1:8740"
CHUNK = 1024 * 1024
JSON_MAX_BYTES = 16 * 1024 * 1024  # the largest JSON answer read
IPNS_RECORD = "application/vnd.ipfs.ipns-record"
Progress = Callable[[int], None]


def q(text: str) -> str:
    """One path segment, quoted whole (a ``/`` inside it too)."""
    return quote(text, safe="")


class ClientError(RegistryError):
    """The registry refused the request or could not be reached."""

    code = "client_error"
    http_status = 502

    def __init__(
        self, message: str, *, status: int = 0, error_code: str = "", details: Any = None, request: str = ""
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.request = request
        super().__init__(message, status=status, error_code=error_code, server_details=details or {})

    def describe(self) -> str:
        """The message with the request and the server's status and code: ``GET /v1/x: 404 not_found: ...``."""
        if self.status and self.error_code:
            return f"{self.request}: {self.status} {self.error_code}: {self.message}"
        return f"{self.request}: {self.message}" if self.request and self.status else self.message


class RegistryClient:
    """Calls the registry at ``base_url`` (``MODELPACK_REGISTRY``) with an optional bearer token."""

    def __init__(
        self, base_url: str = DEFAULT_REGISTRY, token: str | None = None, timeout_s: float = 300
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"registry URL {base_url!r} is not http(s)://HOST[:PORT]")
        self.base_url = base_url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self._timeout = timeout_s
        if token and parts.scheme == "http" and not _loopback(parts.hostname):
            print(
                f"warning: sending the API token over plain http to {parts.hostname} (use https)",
                file=sys.stderr,
            )
        self._conn: http.client.HTTPConnection | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Accept": "application/json"}
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        h.update(extra or {})
        return h

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | BinaryIO | None = None,
        length: int | None = None,
        headers: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> http.client.HTTPResponse:
        conn = self._connection()
        url = self._prefix + path
        try:
            conn.putrequest(method, url, skip_accept_encoding=True)
            hdrs = self._headers(headers)
            if body is not None:
                hdrs["Content-Length"] = str(len(body) if isinstance(body, bytes) else length)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.endheaders()
            try:
                if isinstance(body, bytes):
                    conn.send(body)
                elif body is not None:  # never past the Content-Length sent, should the file have grown
                    left = sys.maxsize if length is None else length
                    while left > 0 and (chunk := body.read(min(left, CHUNK))):
                        conn.send(chunk)
                        left -= len(chunk)
                        if progress:
                            progress(len(chunk))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server refused early (e.g. 413); its answer is still readable
            resp = conn.getresponse()
        except OSError as e:
            self.close()
            raise ClientError(f"cannot reach the registry at {self.base_url}: {e}") from None
        except http.client.HTTPException as e:
            self.close()
            raise ClientError(f"the registry at {self.base_url} broke the connection: {e!r}") from None
        self._raise_for(resp, f"{method} {path}")
        return resp

    def _raise_for(self, resp: http.client.HTTPResponse, request: str) -> None:
        if 300 <= resp.status < 400:
            self.close()  # never followed: a redirect to another host would carry the token there
            where = (resp.getheader("Location") or "")[:200]
            msg = f"the registry answered HTTP {resp.status} redirecting to {where!r}; redirects are not followed"
            raise ClientError(msg, status=resp.status, request=request)
        if resp.status < 400:
            return
        raw = resp.read(64 * 1024)
        if resp.will_close or not resp.isclosed():
            self.close()
        try:
            err = json.loads(raw)["error"]
            if "reason" in err and "message" not in err:  # the Pinning Service API's {reason, details}
                err = {"code": err["reason"], "message": str(err.get("details") or err["reason"])}
            raise ClientError(
                err["message"],
                status=resp.status,
                error_code=err["code"],
                details=err.get("details"),
                request=request,
            )
        except (ValueError, KeyError, TypeError):
            raise ClientError(
                f"the registry answered HTTP {resp.status}: {raw[:200]!r}",
                status=resp.status,
                request=request,
            ) from None

    def _read(
        self,
        method: str,
        path: str,
        *,
        limit: int,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The whole answer, refused when it is larger than ``limit`` bytes."""
        resp = self._send(method, path, body=body, headers=headers)
        try:
            data = resp.read(limit + 1)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise ClientError(f"{method} {path}: the answer broke off: {e!r}") from None
        if len(data) > limit:
            self.close()
            raise ClientError(f"{method} {path}: the answer is larger than {limit} bytes")
        if resp.will_close or not resp.isclosed():
            self.close()  # never reuse a connection with an answer left half read
        return data

    def _json(
        self, method: str, path: str, payload: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})} if body is not None else headers
        data = self._read(method, path, limit=JSON_MAX_BYTES, body=body, headers=hdrs)
        try:
            return json.loads(data)
        except ValueError:
            raise ClientError(f"{method} {path}: the answer is not JSON") from None

    def _pages(self, path: str, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            params = {**query, **({"cursor": cursor} if cursor else {})}
            page = self._json("GET", path + (f"?{urlencode(params)}" if params else ""))
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- blobs ---------------------------------------------------------------------------------
    def blob(self, cid: str) -> dict[str, Any] | None:
        """The registry's record of an uploaded file, or None when it does not hold it."""
        try:
            result: dict[str, Any] = self._json("GET", f"/v1/blobs/{quote(cid)}")
            return result
        except ClientError as e:
            if e.status == 404:
                return None
            raise

    def upload_blob(
        self,
        cid: str,
        path: Path,
        *,
        sha256: str | None = None,
        profile: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        query = {k: v for k, v in (("sha256", sha256), ("profile", profile)) if v}
        url = f"/v1/blobs/{quote(cid)}" + (f"?{urlencode(query)}" if query else "")
        with path.open("rb") as f:
            resp = self._send(
                "PUT",
                url,
                body=f,
                length=os.fstat(f.fileno()).st_size,
                headers={"Content-Type": "application/octet-stream"},
                progress=progress,
            )
        data: dict[str, Any] = json.loads(resp.read())
        return data

    # -- packs ---------------------------------------------------------------------------------
    def publish(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        ns, model = name.split("/", 1)
        result: dict[str, Any] = self._json("POST", f"/v1/models/{quote(ns)}/{quote(model)}/packs", body)
        return result

    def pack(self, cid: str, *, model: str | None = None) -> dict[str, Any]:
        """A pack's detail; ``model`` (``ns/name``) chooses the listing when several models list the CID."""
        result: dict[str, Any] = self._json("GET", _listing(f"/v1/packs/{quote(cid)}", model))
        return result

    def manifest_bytes(self, cid: str, *, limit: int = JSON_MAX_BYTES) -> bytes:
        """The manifest's bytes as the registry serves them (the caller checks they hash to ``cid``)."""
        return self._read("GET", f"/v1/packs/{quote(cid)}/manifest", limit=limit)

    def stream_shard(self, cid: str, filename: str) -> Iterator[bytes]:
        resp = self._send("GET", f"/v1/packs/{quote(cid)}/shards/{quote(filename)}")
        try:
            while chunk := resp.read(CHUNK):
                yield chunk
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise ClientError(f"download of {filename} broke off: {e!r}") from None

    def models(self, namespace: str | None = None, prefix: str | None = None) -> Iterator[dict[str, Any]]:
        query = {k: v for k, v in (("namespace", namespace), ("prefix", prefix)) if v}
        yield from self._pages("/v1/models", query)

    def versions(self, name: str) -> Iterator[dict[str, Any]]:
        yield from self._pages(f"/v1/models/{name}/packs", {})

    # -- pointers, channels, IPNS ----------------------------------------------------------------
    def resolve(self, name: str, tag: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/models/{name}/pointers/{quote(tag)}")
        return result

    def set_pointer(
        self, name: str, tag: str, cid: str, *, expected: str | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        headers = {"If-Match": f'"{expected}"'} if expected else None
        result: dict[str, Any] = self._json(
            "PUT", f"/v1/models/{name}/pointers/{quote(tag)}", {"cid": cid, "reason": reason}, headers
        )
        return result

    def pointer_history(self, name: str, tag: str | None) -> Iterator[dict[str, Any]]:
        path = f"/v1/models/{name}/pointers/{quote(tag)}/history" if tag else f"/v1/models/{name}/history"
        yield from self._pages(path, {})

    def channel(self, namespace: str, model: str, tag: str) -> dict[str, Any]:
        """A channel's IPNS name and newest record."""
        result: dict[str, Any] = self._json("GET", f"/v1/models/{q(namespace)}/{q(model)}/channels/{q(tag)}")
        return result

    def ipns_record(self, name: str, *, limit: int) -> bytes:
        """The signed IPNS record for ``name`` (Trustless Gateway form), at most ``limit`` bytes."""
        path = f"/ipns/{q(name)}?format=ipns-record"
        return self._read("GET", path, limit=limit, headers={"Accept": IPNS_RECORD})

    # -- gate and replication ---------------------------------------------------------------------
    def validation(self, cid: str, *, model: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", _listing(f"/v1/packs/{quote(cid)}/validation", model))
        return result

    def request_validation(self, cid: str, *, model: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", _listing(f"/v1/packs/{quote(cid)}/validate", model), {})
        return result

    def curate(
        self, cid: str, reason: str, *, undo: bool = False, model: str | None = None
    ) -> dict[str, Any]:
        verb = "uncurate" if undo else "curate"
        path = _listing(f"/v1/packs/{quote(cid)}/{verb}", model)
        result: dict[str, Any] = self._json("POST", path, {"reason": reason})
        return result

    def replicas(self, cid: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/packs/{quote(cid)}/replicas"))

    def replication_status(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/replication/status"))

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/nodes")["nodes"])

    def add_node(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/nodes", body))

    def drain_node(self, name: str, draining: bool) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/nodes/{quote(name)}/drain", {"draining": draining}))

    def remove_node(self, name: str, force: bool) -> dict[str, Any]:
        return dict(self._json("DELETE", f"/v1/nodes/{quote(name)}?force={'true' if force else 'false'}"))

    # -- trust: keys, policies, a pack's signatures -----------------------------------------------
    def trust(self, cid: str, *, model: str | None = None) -> dict[str, Any]:
        """Each stored signature of the pack (with its receipt time) and the policy's verdict."""
        result: dict[str, Any] = self._json("GET", _listing(f"/v1/packs/{q(cid)}/trust", model))
        return result

    def keys(self, publisher: str | None = None) -> Iterator[dict[str, Any]]:
        yield from self._pages("/v1/keys", {"publisher": publisher} if publisher is not None else {})

    def key_challenge(self, public_key: str) -> dict[str, Any]:
        """A registration challenge for ``public_key``: the key must sign its statement."""
        return dict(self._json("POST", "/v1/key-challenges", {"public_key": public_key}))

    def add_key(self, public_key: str, challenge: str, signature: str) -> dict[str, Any]:
        """Register ``public_key`` with proof of possession (``signature``: base64, of the challenge's statement)."""
        body = {"public_key": public_key, "challenge": challenge, "signature": signature}
        return dict(self._json("POST", "/v1/keys", body))

    def revoke_key(self, key_id: str, reason: str, at: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": reason} | ({"at": at} if at else {})
        return dict(self._json("POST", f"/v1/keys/{q(key_id)}/revoke", body))

    def policy(self, namespace: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/namespaces/{q(namespace)}/policy"))

    def policy_file(self, namespace: str) -> dict[str, Any]:
        """The namespace's policy in the file form ``verify --trust-policy`` reads."""
        return dict(self._json("GET", f"/v1/namespaces/{q(namespace)}/policy/file"))

    def set_policy(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("PUT", f"/v1/namespaces/{q(namespace)}/policy", body))

    # -- tokens ----------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/v1/whoami")
        return result

    def tokens(self) -> list[dict[str, Any]]:
        """The caller's tokens (every token for an admin); never their secrets."""
        return list(self._pages("/v1/tokens", {}))

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        return dict(self._json("DELETE", f"/v1/tokens/{token_id}"))


def _loopback(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    return False


def _listing(path: str, model: str | None) -> str:
    """``path`` for the listing of a CID under ``model`` (``ns/name``), when the caller knows it."""
    return path if model is None else f"{path}?model={quote(model, safe='/')}"
