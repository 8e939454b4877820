"""``modelpack verify`` against a registry that lies: every tampered link of the chain is caught, one line each.

A small fake registry on 127.0.0.1 serves genuine records, manifests and shards, and then altered ones.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from click.testing import CliRunner, Result
from multiformats import CID, multihash

from pinner.unixfs import hash_file
from registry.cli.trust_cmd import verify
from registry.ipns.name import ipns_name
from registry.ipns.record import make_record
from registry.trust.keys import generate_private_key, public_key_of
from registry.trust.signatures import sign_manifest

SHARD_NAME = "model-00001-of-00001.safetensors"
SHARD = bytes(range(256)) * 400
LATER = datetime.now(UTC) + timedelta(hours=6)


def pack_cid(canonical: bytes) -> str:
    return str(CID("base32", 1, "raw", multihash.digest(canonical, "sha2-256")))


class FakeRegistry:
    """Routes path -> body; tests replace entries to make the registry lie."""

    def __init__(self) -> None:
        self.signer = generate_private_key()
        self.channel_key = generate_private_key()
        self.name = ipns_name(public_key_of(self.channel_key))
        doc = {
            "format": "safetensors",
            "model_name": "tiny",
            "model_version": "1",
            "config": {"d_model": 8},
            "shards": [
                {
                    "filename": SHARD_NAME,
                    "cid": str(hash_file(io.BytesIO(SHARD)).cid),
                    "sha256": "sha256:" + hashlib.sha256(SHARD).hexdigest(),
                }
            ],
        }
        self.manifest = sign_manifest(doc, self.signer)
        self.routes: dict[str, bytes] = {}
        self.policy = {"version": 1, "namespaces": {"acme": {"keys": [public_key_of(self.signer).b64]}}}
        self.serve(self.manifest, make_record(self.channel_key, "/ipfs/X", 0, LATER, 10**9))

    def serve(self, manifest: dict[str, Any], record: bytes | None = None, shard: bytes = SHARD) -> str:
        canonical = rfc8785.dumps(manifest)
        cid = pack_cid(canonical)
        if record is None or b"/ipfs/X" in record:
            record = make_record(self.channel_key, f"/ipfs/{cid}", 1, LATER, 10**9)
        self.routes = {
            "/v1/models/acme/tiny/channels/curated": json.dumps({"name": self.name}).encode(),
            f"/ipns/{self.name}": record,
            f"/v1/packs/{cid}/manifest": canonical,
            f"/v1/packs/{cid}": json.dumps(
                {"namespace": "acme", "model": "tiny", "model_version": "1"}
            ).encode(),
            f"/v1/packs/{cid}/trust": json.dumps({"signatures": []}).encode(),
            "/v1/namespaces/acme/policy/file": json.dumps(self.policy).encode(),
            f"/v1/packs/{cid}/shards/{SHARD_NAME}": shard,
        }
        return cid


@pytest.fixture
def fake() -> Iterator[tuple[FakeRegistry, str]]:
    reg = FakeRegistry()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            body = reg.routes.get(path)
            if body is None:
                self.send_response(404)
                body = json.dumps(
                    {"error": {"code": "not_found", "message": f"no {path}", "details": {}}}
                ).encode()
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield reg, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(url: str, tmp_path: Path, target: str = "acme/tiny@curated", *extra: str) -> Result:
    args = [target, "--registry", url, "--state-file", str(tmp_path / "seen.json"), *extra]
    return CliRunner().invoke(verify, args, catch_exceptions=False)


def fails(result: Result, text: str) -> bool:
    return result.exit_code == 1 and any(
        line.startswith("FAIL") and text in line for line in result.stdout.splitlines()
    )


def test_the_honest_chain_passes(fake: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    reg, url = fake
    r = run(url, tmp_path)
    assert r.exit_code == 0 and "OK 1 shard(s) and 0 file(s) verified, 1 trusted signature(s)" in r.stdout, (
        r.output
    )
    assert run(url, tmp_path, reg.name).exit_code == 0


def test_a_flipped_shard_byte(fake: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    reg, url = fake
    bad = bytearray(SHARD)
    bad[1000] ^= 1
    reg.serve(reg.manifest, shard=bytes(bad))
    r = run(url, tmp_path)
    assert fails(r, "sha256 is") and fails(r, "CID is")


def test_a_manifest_that_is_not_the_one_the_record_names(
    fake: tuple[FakeRegistry, str], tmp_path: Path
) -> None:
    reg, url = fake
    cid = reg.serve(reg.manifest)
    other = copy.deepcopy(reg.manifest)
    other["license"] = "MIT"
    reg.routes[f"/v1/packs/{cid}/manifest"] = rfc8785.dumps(other)
    assert fails(run(url, tmp_path), f"not {cid}")


def test_a_signature_over_a_different_manifest(fake: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    reg, url = fake
    altered = copy.deepcopy(reg.manifest)
    altered["config"]["d_model"] = 16  # the registry re-points the channel; the publisher's signature stays
    reg.serve(altered)
    r = run(url, tmp_path)
    assert fails(r, "bad_signature") and fails(r, "0 valid signature(s) by trusted keys")


def test_a_record_signed_by_another_key_and_an_expired_one(
    fake: tuple[FakeRegistry, str], tmp_path: Path
) -> None:
    reg, url = fake
    cid = reg.serve(reg.manifest)
    reg.routes[f"/ipns/{reg.name}"] = make_record(generate_private_key(), f"/ipfs/{cid}", 9, LATER, 0)
    assert fails(run(url, tmp_path), "signature does not verify")
    past = datetime.now(UTC) - timedelta(minutes=1)
    reg.routes[f"/ipns/{reg.name}"] = make_record(reg.channel_key, f"/ipfs/{cid}", 9, past, 0)
    assert fails(run(url, tmp_path), "expired")
    assert not (tmp_path / "seen.json").exists()  # an invalid record is never remembered
    reg.routes[f"/ipns/{reg.name}"] = make_record(reg.channel_key, "/ipns/elsewhere", 9, LATER, 0)
    assert fails(run(url, tmp_path), "not /ipfs/<pack CID>")


def test_the_registry_policy_or_a_local_file_decides_trust(
    fake: tuple[FakeRegistry, str], tmp_path: Path
) -> None:
    reg, url = fake
    trusted = json.dumps(reg.policy)
    reg.policy = {"version": 1, "namespaces": {"acme": {"keys": [public_key_of(generate_private_key()).b64]}}}
    reg.serve(reg.manifest)
    r = run(url, tmp_path)
    assert fails(r, "0 valid signature(s) by trusted keys")
    (tmp_path / "mine.json").write_text(trusted)
    assert (
        run(url, tmp_path, "acme/tiny@curated", "--trust-policy", str(tmp_path / "mine.json")).exit_code == 0
    )
