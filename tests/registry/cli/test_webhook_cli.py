"""``modelpack webhook`` against a live registry: add (the secret printed once), ls, test (a signed ping a
receiver verifies), deliveries, rotate, enable/disable, rm; a non-admin token and bad input fail in a sentence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from tests.registry.api.live import LiveServer
from tests.registry.cli.clihelp import local_token, run

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class _Hook(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.got.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    _Hook.got = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_webhook_commands(server: LiveServer, hook_url: str) -> None:
    admin = local_token(server.settings, "--publisher", "carol", "--namespace", "acme", "--scope", "admin")[
        "token"
    ]
    alice = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")["token"]
    r = run(server, "webhook", "add", "acme", hook_url, "--event", "pack.curated,pointer.moved", token=admin)
    assert r.exit_code == 0, r.output
    secret = r.output.splitlines()[0]
    assert secret.startswith("whsec_") and "shown only now" in r.output
    r = run(server, "webhook", "ls", "acme", "--json", token=admin)
    (hook,) = json.loads(r.output)
    assert hook["events"] == ["pack.curated", "pointer.moved"] and secret[6:] not in r.output
    assert hook_url in run(server, "webhook", "ls", "acme", token=admin).output

    r = run(server, "webhook", "test", "acme", str(hook["id"]), token=admin)
    assert r.exit_code == 0 and "delivered" in r.output and "HTTP 204" in r.output, r.output
    ((headers, body),) = _Hook.got
    assert Webhook(secret).verify(body, headers)["type"] == "webhook.test"
    r = run(server, "webhook", "deliveries", "acme", str(hook["id"]), token=admin)
    assert r.exit_code == 0 and "webhook.test" in r.output and "delivered" in r.output, r.output

    r = run(server, "webhook", "rotate", "acme", str(hook["id"]), token=admin)
    new = r.output.splitlines()[0]
    assert r.exit_code == 0 and new.startswith("whsec_") and new != secret
    run(server, "webhook", "test", "acme", str(hook["id"]), token=admin)
    Webhook(new).verify(_Hook.got[1][1], _Hook.got[1][0])

    r = run(server, "webhook", "enable", "acme", str(hook["id"]), "--disable", token=admin)
    assert r.exit_code == 0 and "disabled (disabled by carol)" in r.output, r.output
    r = run(server, "webhook", "enable", "acme", str(hook["id"]), token=admin)
    assert r.exit_code == 0 and "enabled" in r.output and "disabled" not in r.output

    r = run(server, "webhook", "ls", "acme", token=alice)
    assert r.exit_code == 1 and "admin scope" in r.output and "Traceback" not in r.output
    r = run(server, "webhook", "add", "acme", "http://example.com/x", token=admin)
    assert r.exit_code == 1 and "webhooks.allowed_hosts" in r.output
    r = run(server, "webhook", "ls", "acme")
    assert r.exit_code == 2 and "needs an API token" in r.output

    r = run(server, "webhook", "rm", "acme", str(hook["id"]), token=admin)
    assert r.exit_code == 0 and "removed webhook" in r.output
    r = run(server, "webhook", "test", "acme", str(hook["id"]), token=admin)
    assert r.exit_code == 1 and "no webhook" in r.output
