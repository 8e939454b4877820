"""``modelpack gate|validate|curate`` against a live daemon (job worker on): exit codes per failure kind."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.cli.gate_cmd import curate, gate, validate
from registry.client import RegistryClient
from registry.settings import Settings
from registry.verify.checks import EXIT_CODES
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer
from tests.registry.gate import packs

DEADLINE_S = 180.0
pytestmark = pytest.mark.slow  # a live daemon with its job worker and the real sandbox


class Live:
    def __init__(self, srv: LiveServer, admin: str, alice: str, key: Ed25519PrivateKey, tmp: Path) -> None:
        self.srv, self.admin, self.alice, self.key, self.tmp = srv, admin, alice, key, tmp

    def publish(self, *, seed: int = 0, defect: str | None = None, signed: bool = True) -> str:
        pack = packs.make_pack(self.tmp / f"p{seed}{defect}{signed}", seed=seed, defect=defect)
        if signed:
            packs.sign(pack, self.key)
        with RegistryClient(self.srv.url, self.alice) as c:
            for name, data in packs.shard_files(pack):
                c.upload_blob(packs.cid_of(data), pack / name)
            cid: str = c.publish("acme/tiny", {"manifest": packs.manifest_of(pack)})["cid"]
        return cid

    def wait_state(self, cid: str, *states: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_S
        with RegistryClient(self.srv.url) as c:
            while True:
                v: dict[str, Any] = c._json("GET", f"/v1/packs/{cid}/validation")
                if v["state"] in states:
                    return v
                assert time.monotonic() < deadline, f"{cid} stayed {v['state']}: {v}"
                time.sleep(0.1)

    def gate(self, *args: str) -> tuple[int, str]:
        r = CliRunner().invoke(gate, [*args, "--registry", self.srv.url])
        return r.exit_code, r.output


@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[Live]:
    settings = settings.model_copy(
        update={"curation": settings.curation.model_copy(update={"sweep_interval_s": 0.5, "retry_s": 0.2})}
    )
    with LiveServer(settings) as srv:
        admin = srv.run(helpers.token(srv.app, "root", scopes=("admin",)))
        alice = srv.run(helpers.token(srv.app, "alice", ["acme"]))
        key = Ed25519PrivateKey.generate()
        with RegistryClient(srv.url, alice) as c:
            c.add_key(**helpers.prove_key(c.key_challenge(packs.key_b64(key)), key))
        with RegistryClient(srv.url, admin) as c:
            c._json("PUT", "/v1/namespaces/acme/policy", {"keys": [packs.key_id(key)], "reason": "test"})
        yield Live(srv, admin, alice, key, tmp_path)


def test_published_pack_is_validated_and_curated_automatically_and_gate_passes(
    live: Live, tmp_path: Path
) -> None:
    cid = live.publish()
    live.wait_state(cid, "curated")
    junit = tmp_path / "gate.xml"
    code, out = live.gate("acme/tiny@curated", "--require", "curated", "--junit", str(junit))
    assert code == 0, out
    cases = ET.parse(junit).getroot().findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == [
        "resolve",
        "manifest",
        "registry_state",
        "signatures",
        "replication",
    ]
    code, out = live.gate(cid, "--json")
    assert code == 0 and json.loads(out)["cid"] == cid
    # the embedded store is one copy: asking for two is under-replicated
    code, out = live.gate(cid, "--min-replicas", "2")
    assert code == EXIT_CODES["under_replicated"], out
    # a policy file that trusts someone else: untrusted, re-verified locally
    other = packs.policy_file(tmp_path / "other.json", Ed25519PrivateKey.generate())
    code, out = live.gate(cid, "--trust-policy", str(other))
    assert code == EXIT_CODES["untrusted"] and "FAIL signatures" in out, out


def test_rejected_unsigned_missing_and_unreachable(live: Live) -> None:
    nan = live.publish(seed=1, defect="nan")
    v = live.wait_state(nan, "rejected")
    assert "non-finite" in v["state_reason"]
    code, out = live.gate(nan)
    assert code == EXIT_CODES["smoke_failed"] and "FAIL registry_state: rejected" in out, out
    unsigned = live.publish(seed=2, signed=False)
    live.wait_state(unsigned, "validated")
    code, out = live.gate(unsigned, "--require", "curated")
    assert code == EXIT_CODES["untrusted"], out  # untrusted outranks "not curated yet"
    code, out = live.gate("acme/nothing@curated")
    assert code == EXIT_CODES["not_found"], out
    r = CliRunner().invoke(gate, ["acme/tiny@curated", "--registry", "http://127.0.0.1:9"])
    assert r.exit_code == EXIT_CODES["unreachable"], r.output


def test_validate_wait_and_curate_by_hand(live: Live) -> None:
    first = live.publish(seed=1)
    live.wait_state(first, "curated")
    second = live.publish(seed=2)
    live.wait_state(second, "curated")
    base = ["--registry", live.srv.url, "--token"]
    r = CliRunner().invoke(validate, [first, "--wait", "--timeout", "60", *base, live.alice])
    assert r.exit_code == 0 and "pass" in r.output, r.output
    r = CliRunner().invoke(curate, [first, "--reason", "second regressed", *base, live.alice])
    assert r.exit_code == 1 and "admin" in r.output
    r = CliRunner().invoke(curate, [first, "--reason", "second regressed", *base, live.admin])
    assert r.exit_code == 0 and f"curated pointer now {first}" in r.output, r.output
    r = CliRunner().invoke(curate, [first, "--undo", "--reason", "both bad", *base, live.admin])
    assert r.exit_code == 0 and f"curated pointer now {second}" in r.output, r.output
