"""``modelpack verify NS/MODEL@CHANNEL | IPNS-NAME | CID --registry URL`` against a live registry, and the
``key`` / ``policy`` commands that set up what it trusts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from registry.cli.trust_cmd import verify
from registry.cli.trust_registry_cmd import key, policy
from registry.settings import Settings
from registry.trust.keys import generate_private_key, public_key_of, write_private_key
from registry.trust.signatures import sign_manifest
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SHARD = ("model-00001-of-00001.safetensors", helpers.shard_bytes(70_000, 11))


@dataclass
class Live:
    srv: LiveServer
    admin: str
    alice: str
    tmp: Path

    @property
    def url(self) -> str:
        return self.srv.url

    def cli(self, cmd: Any, *args: str, token: str | None = None) -> Result:
        env = {"MODELPACK_REGISTRY": self.url, "MODELPACK_TOKEN": token or self.alice}
        return CliRunner().invoke(cmd, list(args), env=env, catch_exceptions=False)

    def verify(self, *args: str) -> Result:
        return self.cli(verify, *args, "--state-file", str(self.tmp / "seen.json"))

    def publish(self, version: str, *keys: Any) -> str:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.alice}"
        assert s.put(f"{self.url}/v1/blobs/{helpers.cid_of(SHARD[1])}", data=SHARD[1]).status_code in (
            200,
            201,
        )
        doc = helpers.manifest([SHARD], version=version)
        for k in keys:
            doc = sign_manifest(doc, k)
        r = s.post(f"{self.url}/v1/models/acme/tiny/packs", json={"manifest": doc})
        assert r.status_code == 201, r.text
        return str(r.json()["cid"])


@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[Live]:
    settings = settings.model_copy(
        update={
            "jobs": settings.jobs.model_copy(update={"workers": 0}),
            "ipns": settings.ipns.model_copy(update={"publish_latest": True}),
        }
    )
    with LiveServer(settings) as srv:
        admin = srv.run(helpers.token(srv.app, "root", scopes=("admin",)))
        alice = srv.run(helpers.token(srv.app, "alice", ["acme"]))
        yield Live(srv, admin, alice, tmp_path)


@pytest.fixture
def signer(live: Live) -> Any:
    """Alice's key, registered through the CLI, trusted by acme through the CLI."""
    k = generate_private_key()
    path = live.tmp / "alice.key"
    write_private_key(path, k)
    r = live.cli(key, "add", str(path))
    assert r.exit_code == 0 and public_key_of(k).key_id in r.output, r.output
    r = live.cli(policy, "set", "acme", "--publisher", "alice", "--reason", "alice signs", token=live.admin)
    assert r.exit_code == 0 and "1 publisher(s)" in r.output, r.output
    return k


def test_channel_ipns_name_and_cid_all_verify(live: Live, signer: Any) -> None:
    cid = live.publish("1.0.0", signer)
    r = live.verify("acme/tiny@latest")
    assert r.exit_code == 0, r.output
    assert "OK 1 shard(s) and 0 file(s) verified, 1 trusted signature(s)" in r.output
    name = requests.get(f"{live.url}/v1/models/acme/tiny/channels/latest").json()["name"]
    assert live.verify(name).exit_code == 0
    out = json.loads(live.verify(cid, "--json").stdout)
    assert out["ok"] and out["trusted_valid"] == [public_key_of(signer).key_id] and out["shards_checked"] == 1
    seen = json.loads((live.tmp / "seen.json").read_text())["names"][name]
    assert seen["sequence"] == 0 and seen["value"] == f"/ipfs/{cid}"


def test_rollback_and_equivocation_against_seen_sequences(live: Live, signer: Any) -> None:
    live.publish("1.0.0", signer)
    assert live.verify("acme/tiny@latest").exit_code == 0
    state = live.tmp / "seen.json"
    doc = json.loads(state.read_text())
    (name,) = doc["names"]
    doc["names"][name]["sequence"] = 5
    state.write_text(json.dumps(doc))
    r = live.verify("acme/tiny@latest")
    assert r.exit_code == 1 and "older than 5 seen before" in r.output
    doc["names"][name] = {"sequence": 0, "value": "/ipfs/bafkqaaa"}
    state.write_text(json.dumps(doc))
    r = live.verify("acme/tiny@latest")
    assert r.exit_code == 1 and "seen before with another value" in r.output
    state.write_text("not json")
    assert live.verify("acme/tiny@latest").exit_code == 2


def test_unsigned_and_untrusted_packs_fail_with_reasons(live: Live, signer: Any) -> None:
    live.publish("1.0.0")
    r = live.verify("acme/tiny@latest")
    assert r.exit_code == 1 and "0 valid signature(s) by trusted keys; the policy requires 1" in r.output
    live.publish("1.0.1", generate_private_key())
    r = live.verify("acme/tiny@latest")
    assert r.exit_code == 1 and "FAIL" in r.output


def test_offline_policy_file_and_revocation_by_receipt_time(live: Live, signer: Any) -> None:
    cid = live.publish("1.0.0", signer)
    file_form = live.cli(policy, "show", "acme", "--file-format")
    assert file_form.exit_code == 0
    (live.tmp / "policy.json").write_text(file_form.output)
    assert (
        live.verify(cid, "--trust-policy", str(live.tmp / "policy.json"), "--namespace", "acme").exit_code
        == 0
    )
    other = {"version": 1, "namespaces": {"acme": {"keys": [public_key_of(generate_private_key()).b64]}}}
    (live.tmp / "other.json").write_text(json.dumps(other))
    assert (
        live.verify(cid, "--trust-policy", str(live.tmp / "other.json"), "--namespace", "acme").exit_code == 1
    )

    kid = public_key_of(signer).key_id
    r = live.cli(key, "revoke", kid, "--reason", "rotated")
    assert r.exit_code == 0 and "revoked" in r.output
    # the registry received this signature before the revocation: still valid by its receipt time ...
    assert live.verify(cid).exit_code == 0
    # ... but offline nobody vouches for a signing time, so a revoked key never counts there
    (live.tmp / "policy.json").write_text(live.cli(policy, "show", "acme", "--file-format").output)
    r = live.verify(cid, "--trust-policy", str(live.tmp / "policy.json"), "--namespace", "acme")
    assert r.exit_code == 1 and "revoked" in r.output
    late = live.publish("1.0.1", signer)  # signed after revocation: stored, never trusted
    r = live.verify(late)
    assert r.exit_code == 1 and "revoked" in r.output


def test_admin_backdated_revocation_invalidates_earlier_signatures(live: Live, signer: Any) -> None:
    cid = live.publish("1.0.0", signer)
    kid = public_key_of(signer).key_id
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = live.cli(key, "revoke", kid, "--reason", "leaked", "--at", past)
    assert r.exit_code == 1 and "only a global admin" in r.output
    r = live.cli(key, "revoke", kid, "--reason", "leaked", "--at", past, token=live.admin)
    assert r.exit_code == 0 and cid in r.output
    assert live.verify(cid).exit_code == 1


def test_fetch_failures_exit_3_and_usage_errors_exit_2(live: Live) -> None:
    r = live.verify("acme/tiny@curated")
    assert r.exit_code == 3 and "has no IPNS record" in r.output
    r = CliRunner().invoke(
        verify, ["acme/tiny@latest", "--registry", "http://127.0.0.1:9", "--state-file", "x"]
    )
    assert r.exit_code == 3 and "cannot reach the registry" in r.output
    assert live.verify("not a target").exit_code == 2
    assert live.verify("acme/tiny@latest", "--no-cids").exit_code == 2
    assert live.verify("acme/tiny@latest", "--trust-policy", "/nonexistent").exit_code == 2


def test_key_and_policy_commands(live: Live, signer: Any) -> None:
    kid = public_key_of(signer).key_id
    r = live.cli(key, "ls", "--publisher", "alice")
    assert r.exit_code == 0 and kid in r.output and "active" in r.output
    assert json.loads(live.cli(key, "ls", "--json").output)[0]["key_id"] == kid
    r = live.cli(policy, "show", "acme")
    assert r.exit_code == 0 and "trusted publishers: alice" in r.output and kid in r.output
    r = live.cli(policy, "set", "acme", "--key", kid)  # alice has no admin scope
    assert r.exit_code == 1 and "admin scope" in r.output
    r = live.cli(key, "add", "garbage")
    assert r.exit_code == 1 and "bad_public_key" in r.output
    r = live.cli(key, "add", public_key_of(generate_private_key()).b64)  # no private key to sign with
    assert r.exit_code == 1 and "proof that you hold it" in r.output
    other = live.tmp / "other.key"
    write_private_key(other, generate_private_key())
    r = live.cli(key, "add", public_key_of(signer).b64, "--key", str(other))
    assert r.exit_code == 1 and "not the private half" in r.output
    r = CliRunner().invoke(key, ["add", "x"], env={"MODELPACK_REGISTRY": "", "MODELPACK_TOKEN": ""})
    assert r.exit_code == 2
