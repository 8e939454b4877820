"""Trust policy files (JSON and TOML) and the curation decision they give."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.trust.errors import PolicyError
from registry.trust.keys import public_key_of
from registry.trust.policy import load_policy, parse_policy, policy_to_json
from registry.trust.signatures import SignatureCheck, Verdict


def check(key: Ed25519PrivateKey, verdict: Verdict = Verdict.VALID) -> SignatureCheck:
    return SignatureCheck(public_key_of(key).key_id, verdict, "", "provenance")


def test_toml_and_json_give_the_same_policy(
    tmp_path: Path, key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    a, b = public_key_of(key), public_key_of(other_key)
    toml = tmp_path / "p.toml"
    toml.write_text(
        "version = 1\n[namespaces.acme]\nrequired_signatures = 2\npublishers = ['alice']\n"
        f"[[namespaces.acme.keys]]\npublic_key = '{a.b64}'\nkey_id = '{a.key_id}'\nlabel = 'bot'\n"
        f"[[namespaces.acme.keys]]\npublic_key = '''{b.to_pem().decode()}'''\n"
        "revoked_at = 2026-03-01T00:00:00Z\n"
    )
    policy = load_policy(toml)
    ns = policy.for_namespace("acme")
    assert ns is not None and ns.required_signatures == 2 and ns.publishers == ("alice",)
    assert [k.key_id for k in ns.keys] == [a.key_id, b.key_id]
    assert ns.keys[1].revoked_at == datetime(2026, 3, 1, tzinfo=UTC)
    js = tmp_path / "p.json"
    js.write_text(json.dumps(policy_to_json(policy)))
    assert load_policy(js) == policy


def test_decision_counts_distinct_trusted_valid_keys(
    key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    policy = parse_policy(
        {"namespaces": {"acme": {"required_signatures": 2, "keys": [public_key_of(key).b64]}}}
    )
    ns = policy.for_namespace("acme")
    assert ns is not None
    one = ns.evaluate([check(key), check(key)])
    assert not one.satisfied and "requires 2" in one.reasons[0]
    untrusted = ns.evaluate([check(key), check(other_key)])
    assert not untrusted.satisfied and untrusted.trusted_valid == (public_key_of(key).key_id,)
    via_publisher = ns.evaluate(
        [check(key), check(other_key)], publisher_key_ids=[public_key_of(other_key).key_id]
    )
    assert via_publisher.satisfied
    assert not ns.evaluate(
        [check(key), check(other_key, Verdict.REVOKED)], [public_key_of(other_key).key_id]
    ).satisfied


def test_default_requires_one_and_wildcard_applies(key: Ed25519PrivateKey) -> None:
    policy = parse_policy({"namespaces": {"*": {"keys": [public_key_of(key).b64]}}})
    ns = policy.for_namespace("anything")
    assert ns is not None and ns.required_signatures == 1
    assert ns.evaluate([check(key)]).satisfied
    assert ns.evaluate([]).satisfied is False


RFC8032_PUB = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"version": 2, "namespaces": {"a": {}}}, "version"),
        ({"namespaces": {}}, "at least one namespace"),
        ({"namespaces": {"a": {"required_signatures": 0}}}, "required_signatures"),
        ({"namespaces": {"a": {"required_signatures": "1"}}}, "integer"),
        ({"namespaces": {"a": {"keys": ["nope"]}}}, "namespaces.a.keys\\[0\\].public_key"),
        # RFC 8032 test 1's public key, with a key_id that is not its own
        ({"namespaces": {"a": {"keys": [{"public_key": RFC8032_PUB, "key_id": "ed25519:00"}]}}}, "key_id"),
        ({"namespaces": {"a": {"trusted": []}}}, "unknown field"),
        ({"namespaces": {"a": {}}, "extra": 1}, "unknown field"),
    ],
)
def test_bad_policies_name_the_field(obj: dict[str, object], match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        parse_policy(obj)


def test_unparseable_policy_file(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text("{")
    with pytest.raises(PolicyError, match="does not parse"):
        load_policy(p)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.json")
