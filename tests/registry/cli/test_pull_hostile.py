"""``modelpack pull`` against a hostile registry: bodies are bounded by the manifest, and temporary files in
DEST have unpredictable names created with O_EXCL, so a planted symlink never redirects a write."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from model_core.format.pack import pack_cid_of
from registry.app.main import cli
from tests.registry.api import helpers

SHARD = ("model-00001-of-00001.safetensors", helpers.shard_bytes(50_000, 5))
RAW = json.dumps(helpers.manifest([SHARD])).encode()
CID = pack_cid_of(RAW)


def _handler(extra: bytes) -> type[BaseHTTPRequestHandler]:
    class Fake(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("/manifest"):
                body = RAW
            elif "/shards/" in self.path:
                body = SHARD[1] + extra
            else:
                body = b'{"error": {"code": "not_found", "message": "no", "details": {}}}'
            self.send_response(404 if body.startswith(b'{"error"') else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Fake


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(getattr(request, "param", b"")))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _pull(url: str, dest: Path) -> tuple[int, str]:
    r = CliRunner().invoke(
        cli, ["pull", CID, str(dest)], env={"MODELPACK_REGISTRY": url, "MODELPACK_TOKEN": ""}
    )
    return r.exit_code, r.output


@pytest.mark.parametrize("fake", [b"x" * (3 * 1024 * 1024)], indirect=True)
def test_a_shard_longer_than_the_manifest_says_is_cut_off(fake: str, tmp_path: Path) -> None:
    code, out = _pull(fake, tmp_path / "d")
    assert code == 1 and "more than the 50000 bytes" in out and "Traceback" not in out
    assert not (tmp_path / "d" / SHARD[0]).exists() and not list((tmp_path / "d").glob(".*part*"))


def test_planted_symlinks_at_the_old_temp_names_are_not_followed(fake: str, tmp_path: Path) -> None:
    dest, victim = tmp_path / "d", tmp_path / "victim"
    dest.mkdir()
    victim.write_bytes(b"precious")
    for name in (SHARD[0], "manifest.json"):
        (dest / f".{name}.part-{os.getpid()}").symlink_to(victim)
    code, out = _pull(fake, dest)
    assert code == 0, out
    assert victim.read_bytes() == b"precious"
    assert (dest / SHARD[0]).read_bytes() == SHARD[1] and (dest / "manifest.json").read_bytes() == RAW
