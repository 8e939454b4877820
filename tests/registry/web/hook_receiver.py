"""A webhook receiver for the browser test's real daemon: a plain HTTP server on 127.0.0.1 in a thread that
records each POST, and the Standard Webhooks check written out from the spec (not the daemon's code):
``v1,`` + base64(HMAC-SHA256(base64-decoded secret after ``whsec_``, "{id}.{timestamp}.{body}"))."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self.got: list[Delivery] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._cond:
                    outer.got.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
                    outer._cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, n: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.got) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"the receiver got {len(self.got)} of {n} deliveries"
                self._cond.wait(left)
            return list(self.got)


def verify_standard_webhook(secret: str, d: Delivery, tolerance_s: float = 300) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, ts = d.headers["webhook-id"], d.headers["webhook-timestamp"]
    if abs(time.time() - int(ts)) > tolerance_s:
        return False
    signed = f"{msg_id}.{ts}.".encode() + d.body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [
        part.split(",", 1)[1] for part in d.headers["webhook-signature"].split() if part.startswith("v1,")
    ]
    return any(hmac.compare_digest(want, g) for g in given)
