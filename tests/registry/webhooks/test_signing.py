"""Standard Webhooks signatures: the spec's published example, headers an independent implementation (the
spec's own ``standardwebhooks`` library) verifies, rotation's two signatures, and the URL allow-list."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from registry.errors import BadRequest
from registry.events.store import EVENT_TYPES
from registry.webhooks import signing
from registry.webhooks.config import WEBHOOK_EVENT_TYPES, check_event_types, check_url

ALLOWED = ("127.0.0.1", "localhost")


def test_the_specs_published_example_signs_the_same() -> None:
    key = signing.secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    sig = signing.signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_verify_with_the_spec_library_and_a_changed_byte_does_not() -> None:
    raw = signing.new_secret()
    secret = signing.secret_text(raw)
    assert secret.startswith("whsec_") and signing.secret_bytes(secret) == raw and len(raw) == 32
    body = b'{"type":"pack.curated","timestamp":"2026-12-01T00:00:00Z","data":{"id":7}}'
    headers = signing.headers([raw], "evt_7", int(time.time()), body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(secret).verify(body, headers) == {
        "type": "pack.curated", "timestamp": "2026-12-01T00:00:00Z", "data": {"id": 7},
    }  # fmt: skip
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"7", b"8"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.secret_text(signing.new_secret())).verify(body, headers)
    stale = signing.headers([raw], "evt_7", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, stale)


def test_during_a_rotation_both_secrets_verify() -> None:
    new, old = signing.new_secret(), signing.new_secret()
    body = b"{}"
    headers = signing.headers([new, old], "evt_1", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for raw in (new, old):
        Webhook(signing.secret_text(raw)).verify(body, headers)
    with pytest.raises(ValueError):
        signing.headers([], "evt_1", 0, body)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://127.0.0.1/hook", "http:// or https://"),
        ("http://user:pw@127.0.0.1/hook", "credentials"),
        ("http://example.com/hook", "webhooks.allowed_hosts"),
        ("http://127.0.0.1/hook#frag", "fragment"),
        ("http://127.0.0.1:99999/hook", "not a valid URL"),
        ("http:///hook", "with a host"),
        ("http://127.0.0.1/a b", "whitespace"),
        ("http://127.0.0.1/" + "x" * 3000, "longer than 2048"),
    ],
)
def test_bad_urls_are_refused_naming_the_url(url: str, words: str) -> None:
    with pytest.raises(BadRequest, match=words) as e:
        check_url(url, ALLOWED)
    assert len(e.value.message) < 700 and e.value.details.get("field") == "url"


def test_good_urls_and_the_wildcard() -> None:
    assert (
        check_url("https://localhost:8443/hooks/x?team=ml", ALLOWED)
        == "https://localhost:8443/hooks/x?team=ml"
    )
    assert check_url("http://hooks.example.com/x", ("*",)) == "http://hooks.example.com/x"


def test_event_types_an_endpoint_may_take() -> None:
    assert check_event_types(None) == list(WEBHOOK_EVENT_TYPES)
    assert check_event_types(["pack.curated", "pack.curated", "pointer.moved"]) == [
        "pack.curated",
        "pointer.moved",
    ]
    assert {"node.up", "key.revoked", "pin.status"}.isdisjoint(WEBHOOK_EVENT_TYPES)
    assert set(WEBHOOK_EVENT_TYPES) < set(EVENT_TYPES)
    with pytest.raises(BadRequest, match=r"'node\.up' carries no namespace"):
        check_event_types(["node.up"])
    with pytest.raises(BadRequest, match=r"'pack\.exploded' is not an event type"):
        check_event_types(["pack.exploded"])
