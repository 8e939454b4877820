# ruff: noqa: F811  (the fixtures live and signer come from test_verify_remote)
"""``modelpack verify --registry``: a channel's IPNS name is pinned on first use (a changed name fails),
a withdrawn channel fails with a sentence, and ``--trust-policy`` needs ``--namespace`` for a pack CID or an
IPNS name (the registry being checked must not choose whose policy applies)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from sqlalchemy import delete

from registry.api.keys import BLOCKSTORE, GATE, SESSIONS
from registry.db.models import IpnsKey, IpnsRecord
from registry.gate.validation import ValidationService
from registry.ipns.record import WITHDRAWN_PATH
from tests.registry.cli.test_verify_remote import Live, live, signer  # noqa: F401 (fixtures)
from tests.registry.gate import packs

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _name(live: Live, tag: str) -> str:
    r = requests.get(f"{live.url}/v1/models/acme/tiny/channels/{tag}")
    assert r.status_code == 200, r.text
    return str(r.json()["name"])


def _curate(live: Live, cid: str) -> None:
    app = live.srv.app
    g = app[GATE]
    quick = ValidationService(
        app[SESSIONS], g.config, g.curation, None, store=app[BLOCKSTORE], runner=packs.FakeRunner()
    )
    live.srv.run(quick.validate(cid))


def test_a_withdrawn_channel_fails_verify_with_a_sentence(live: Live, signer: Any) -> None:
    cid = live.publish("1.0.0", signer)
    _curate(live, cid)
    r = live.verify("acme/tiny@curated")
    assert r.exit_code == 0, r.output
    name = _name(live, "curated")
    resp = requests.post(
        f"{live.url}/v1/packs/{cid}/uncurate",
        json={"reason": "bad outputs"},
        headers={"Authorization": f"Bearer {live.admin}"},
    )
    assert resp.status_code == 200 and resp.json()["pointer"] is None, resp.text
    r = live.verify("acme/tiny@curated")
    assert r.exit_code == 1, r.output
    assert "channel acme/tiny@curated was withdrawn" in r.output and "no longer stands behind" in r.output
    r = live.verify(name)
    assert r.exit_code == 1 and "was withdrawn" in r.output
    seen = json.loads((live.tmp / "seen.json").read_text())["names"][name]
    assert seen["sequence"] == 1 and seen["value"] == WITHDRAWN_PATH  # an older record is a replay now


def test_a_channel_name_is_pinned_on_first_use(live: Live, signer: Any) -> None:
    live.publish("1.0.0", signer)
    assert live.verify("acme/tiny@latest").exit_code == 0
    name = _name(live, "latest")
    doc = json.loads((live.tmp / "seen.json").read_text())
    assert doc["channels"][live.url]["acme/tiny@latest"]["name"] == name

    async def rekey() -> None:  # a registry that swaps the channel's key (and so its name)
        async with live.srv.app[SESSIONS]() as s, s.begin():
            await s.execute(delete(IpnsRecord).where(IpnsRecord.name == name))
            await s.execute(delete(IpnsKey).where(IpnsKey.name == name))

    live.srv.run(rekey())
    live.publish("1.0.1", signer)  # signs a first record under a fresh key
    assert _name(live, "latest") != name
    r = live.verify("acme/tiny@latest")
    assert r.exit_code == 1, r.output
    assert f"pinned it to {name} on first use" in r.output and "acme/tiny@latest" in r.output
    # another state file has no pin: the new name verifies there (trust on first use)
    r = live.cli(verify_cmd(), "acme/tiny@latest", "--state-file", str(live.tmp / "other.json"))
    assert r.exit_code == 0, r.output


def test_trust_policy_needs_namespace_for_cid_and_ipns_targets(live: Live, signer: Any) -> None:
    from registry.cli.trust_registry_cmd import policy

    cid = live.publish("1.0.0", signer)
    name = _name(live, "latest")
    (live.tmp / "policy.json").write_text(live.cli(policy, "show", "acme", "--file-format").output)
    for target in (cid, name):
        r = live.verify(target, "--trust-policy", str(live.tmp / "policy.json"))
        assert r.exit_code == 2 and "needs --namespace" in r.output, r.output
    assert (
        live.verify(cid, "--trust-policy", str(live.tmp / "policy.json"), "--namespace", "acme").exit_code
        == 0
    )
    # a channel names its namespace itself
    assert live.verify("acme/tiny@latest", "--trust-policy", str(live.tmp / "policy.json")).exit_code == 0


def verify_cmd() -> Any:
    from registry.cli.trust_cmd import verify

    return verify
