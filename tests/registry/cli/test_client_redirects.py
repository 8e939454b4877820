"""The CLI's client never follows a redirect (it would carry the token to another host) and warns before
sending a token over plain http to a host that is not this machine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry.client import ClientError, RegistryClient


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []
    redirect_to = ""

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        if self.redirect_to:
            self.send_response(307)
            self.send_header("Location", self.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"publisher": "x", "token_id": 1, "scopes": [], "namespaces": null}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.fixture
def servers() -> Iterator[tuple[type[_Recorder], type[_Recorder], str]]:
    other = type("Other", (_Recorder,), {"seen": [], "redirect_to": ""})
    srv_other, other_url = _serve(other)
    # "localhost" differs from "127.0.0.1" as a host name, as another host would.
    front = type(
        "Front", (_Recorder,), {"seen": [], "redirect_to": other_url.replace("127.0.0.1", "localhost")}
    )
    srv_front, front_url = _serve(front)
    yield front, other, front_url
    for srv in (srv_front, srv_other):
        srv.shutdown()
        srv.server_close()


def test_a_redirect_is_refused_and_the_token_stays_home(
    servers: tuple[type[_Recorder], type[_Recorder], str],
) -> None:
    front, other, url = servers
    with RegistryClient(url, "mpk_secret") as c, pytest.raises(ClientError) as e:
        c.whoami()
    assert e.value.status == 307 and "not followed" in e.value.message and "localhost" in e.value.message
    assert front.seen == ["Bearer mpk_secret"] and other.seen == []


def test_plain_http_to_a_remote_host_warns(capsys: pytest.CaptureFixture[str]) -> None:
    RegistryClient("http://registry.example.org:8740", "mpk_secret").close()
    assert "plain http to registry.example.org" in capsys.readouterr().err
    for quiet in (
        "http://127.0.0.1:8740",
        "http://localhost:1",
        "http://[::1]:1",
        "https://registry.example.org",
    ):
        RegistryClient(quiet, "mpk_secret").close()
    RegistryClient("http://registry.example.org:8740", None).close()
    assert capsys.readouterr().err == ""
