"""The client's upload body: exactly the Content-Length's bytes from the file's position, with progress adding up
to them, even when the file grew after its size was taken; the keep-alive connection stays usable for the next
request."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from registry.client import RegistryClient


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a body overrunning its length would corrupt the next request

    def do_PUT(self) -> None:
        n = int(self.headers["Content-Length"])
        body = self.rfile.read(n)
        out = json.dumps({"size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "path": self.path})
        data = out.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _put(c: RegistryClient, body: Any, length: int, seen: list[int]) -> dict[str, Any]:
    resp = c._send("PUT", "/v1/blobs/x", body=body, length=length, progress=seen.append)
    result: dict[str, Any] = json.loads(resp.read())
    return result


def test_a_file_body_arrives_whole_with_its_progress(sink: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)  # several chunks, the last one short
    path = tmp_path / "blob"
    path.write_bytes(data)
    seen: list[int] = []
    with RegistryClient(sink) as c, path.open("rb") as f:
        got = _put(c, f, len(data), seen)
        again = _put(c, io.BytesIO(b"next"), 4, [])  # the same connection, the next request intact
    assert got["size"] == len(data) and got["sha256"] == hashlib.sha256(data).hexdigest()
    assert sum(seen) == len(data) and len(seen) == 4
    assert again["size"] == 4


@pytest.mark.parametrize("kind", ["file", "bytesio"])
def test_a_body_longer_than_its_length_sends_only_the_length(sink: str, tmp_path: Path, kind: str) -> None:
    """A file that grew after its size was taken: the request still carries exactly Content-Length bytes."""
    data = os.urandom(50_000)
    path = tmp_path / "blob"
    path.write_bytes(data + b"appended later")
    seen: list[int] = []
    with RegistryClient(sink) as c, path.open("rb") as f:
        body = f if kind == "file" else io.BytesIO(f.read())
        got = _put(c, body, len(data), seen)
        again = _put(c, io.BytesIO(b"next"), 4, [])
    assert got["size"] == len(data) and got["sha256"] == hashlib.sha256(data).hexdigest()
    assert sum(seen) == len(data) and again["size"] == 4
