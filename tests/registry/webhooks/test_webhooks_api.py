"""The webhooks API: namespace admins only (403 for anyone else, 404 for an endpoint of another namespace), bad
input refused by name with nothing written, secrets shown once and sealed at rest, rotation, the test ping."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from registry.api.keys import SESSIONS
from registry.db.webhooks import WebhookDelivery, WebhookEndpoint
from registry.errors import ConfigError
from registry.ipns.sealed import require_kek_for_sealed_rows
from registry.trust.errors import KeySealError
from registry.trust.sealing import open_private_key
from registry.webhooks import signing
from registry.webhooks.endpoints import secret_aad
from tests.registry.api import helpers
from tests.registry.webhooks.conftest import Hooks
from tests.registry.webhooks.receiver import Receiver

BASE = "/v1/namespaces/acme/webhooks"


async def _rows(h: Hooks) -> list[WebhookEndpoint]:
    async with h.client.app[SESSIONS]() as s:
        return list((await s.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.id))).scalars())


async def test_admins_register_list_and_remove_endpoints(hooks: Hooks, receiver: Receiver) -> None:
    out = await hooks.create(receiver.url(), events=["pack.curated", "pointer.moved"], model="tiny")
    hook, secret = out["webhook"], out["secret"]
    assert secret.startswith("whsec_") and len(signing.secret_bytes(secret)) == 32
    assert hook["events"] == ["pack.curated", "pointer.moved"] and hook["model"] == "tiny"
    assert hook["enabled"] and hook["created_by"] == "carol" and hook["namespace"] == "acme"
    listed = await hooks.call("GET", BASE)
    assert [h["id"] for h in listed["items"]] == [hook["id"]]
    assert "secret" not in listed["items"][0] and secret[6:] not in str(listed)
    one = await hooks.call("GET", f"{BASE}/{hook['id']}")
    assert one == hook
    everything = await hooks.create(receiver.url("/all"))
    assert len(everything["webhook"]["events"]) > 5 and everything["secret"] != secret
    gone = await hooks.call("DELETE", f"{BASE}/{hook['id']}")
    assert gone["id"] == hook["id"]
    await hooks.call("GET", f"{BASE}/{hook['id']}", status=404)
    assert [r.id for r in await _rows(hooks)] == [everything["webhook"]["id"]]


async def test_only_the_namespaces_admins_may_touch_its_webhooks(hooks: Hooks, receiver: Receiver) -> None:
    app = hooks.client.app
    hook = (await hooks.create(receiver.url()))["webhook"]
    other_admin = await helpers.token(app, "dave", ["other"], scopes=("admin",))
    other_hook = (
        await hooks.call(
            "POST",
            "/v1/namespaces/other/webhooks",
            json={"url": receiver.url()},
            token=other_admin,
            status=201,
        )
    )["webhook"]
    root = await helpers.token(app, "root", scopes=("admin",))
    paths = [
        ("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/{hook['id']}"), ("DELETE", f"{BASE}/{hook['id']}"),
        ("PATCH", f"{BASE}/{hook['id']}"), ("POST", f"{BASE}/{hook['id']}/rotate-secret"),
        ("POST", f"{BASE}/{hook['id']}/test"), ("GET", f"{BASE}/{hook['id']}/deliveries"),
        ("POST", f"{BASE}/{hook['id']}/deliveries/1/redeliver"),
    ]  # fmt: skip
    for method, path in paths:
        body = {"json": {"url": receiver.url()}} if method == "POST" and path == BASE else {}
        for token, status, code in ((hooks.alice, 403, "forbidden"), (other_admin, 403, "forbidden")):
            r = await hooks.client.request(method, path, headers=helpers.bearer(token), **body)
            assert r.status == status, (method, path, await r.text())
            assert (await r.json())["error"]["code"] == code
        r = await hooks.client.request(method, path, **body)
        assert r.status == 401, (method, path)
    # an endpoint of another namespace is not found under this one, even for a global admin
    await hooks.call("GET", f"{BASE}/{other_hook['id']}", status=404)
    await hooks.call("GET", f"{BASE}/{other_hook['id']}", token=root, status=404)
    await hooks.call("DELETE", f"/v1/namespaces/other/webhooks/{hook['id']}", token=root, status=404)
    await hooks.call("GET", "/v1/namespaces/nowhere/webhooks", token=root, status=404)
    assert len(await _rows(hooks)) == 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"url": "http://example.com/hook"}, "webhooks.allowed_hosts"),
        ({"url": "http://u:p@127.0.0.1/hook"}, "credentials"),
        ({"url": "file:///etc/passwd"}, "http:// or https://"),
        ({"url": "http://127.0.0.1/h", "events": ["node.up"]}, "carries no namespace"),
        ({"url": "http://127.0.0.1/h", "events": ["<script>"]}, "is not an event type"),
        ({"url": "http://127.0.0.1/h", "model": "Bad Model"}, "not allowed"),
        ({"url": "http://127.0.0.1/h", "secret": "mine"}, "secret"),
        ({"url": "x" * 5000}, "url"),
    ],
)
async def test_bad_registrations_are_400s_naming_the_value(hooks: Hooks, body: dict, words: str) -> None:  # type: ignore[type-arg]
    r = await hooks.client.post(BASE, json=body, headers=helpers.bearer(hooks.admin))
    assert r.status == 400, await r.text()
    err = (await r.json())["error"]
    assert words in err["message"] and len(err["message"]) < 1000, err
    assert await _rows(hooks) == []


async def test_bad_ids_are_400s_and_too_many_endpoints_409(hooks: Hooks, receiver: Receiver) -> None:
    for path in (f"{BASE}/abc", f"{BASE}/0", f"{BASE}/99999999999", f"{BASE}/1/deliveries?before=x"):
        r = await hooks.client.get(path, headers=helpers.bearer(hooks.admin))
        assert r.status in (400, 404), path
        if r.status == 400:
            assert (await r.json())["error"]["code"] == "bad_request"
    hooks.svc.endpoints.config = type(hooks.svc.config)(**{**hooks.svc.config.__dict__, "max_endpoints": 2})
    await hooks.create(receiver.url())
    await hooks.create(receiver.url())
    r = await hooks.client.post(BASE, json={"url": receiver.url()}, headers=helpers.bearer(hooks.admin))
    assert r.status == 409 and (await r.json())["error"]["code"] == "too_many_webhooks"
    assert len(await _rows(hooks)) == 2


async def test_secrets_are_sealed_at_rest_and_bound_to_their_endpoint(
    hooks: Hooks, receiver: Receiver, tmp_path: Path
) -> None:
    a = await hooks.create(receiver.url())
    b = await hooks.create(receiver.url())
    rows = await _rows(hooks)
    for row, out in zip(rows, (a, b), strict=True):
        raw = signing.secret_bytes(out["secret"])
        assert raw not in row.secret and out["secret"].encode() not in row.secret
        assert out["secret"][6:].encode() not in row.secret
        assert row.secret.startswith(b"mpk1")
    kek = hooks.svc.endpoints._kek
    assert open_private_key(rows[0].secret, kek, aad=secret_aad(rows[0].id)) == signing.secret_bytes(
        a["secret"]
    )
    with pytest.raises(KeySealError):  # a sealed secret copied onto another endpoint's row does not open
        open_private_key(rows[0].secret, kek, aad=secret_aad(rows[1].id))
    # without its key-encryption key file the daemon refuses to start rather than make them unreadable
    with pytest.raises(ConfigError, match=r"2 webhook secret\(s\)"):
        await require_kek_for_sealed_rows(hooks.client.app[SESSIONS], None, tmp_path / "elsewhere")


async def test_the_ping_is_signed_and_logged_and_rotation_signs_with_both(
    hooks: Hooks, receiver: Receiver
) -> None:
    out = await hooks.create(receiver.url())
    hook_id, secret = out["webhook"]["id"], out["secret"]
    ping = await hooks.call("POST", f"{BASE}/{hook_id}/test")
    assert (
        ping["status"] == "delivered" and ping["last_status_code"] == 200 and ping["type"] == "webhook.test"
    )
    assert ping["event_id"] is None and ping["attempts"] == 1 and ping["latency_ms"] is not None
    assert ping["response_excerpt"].startswith("receiver says 200") and len(ping["response_excerpt"]) <= 1024
    (got,) = await receiver.wait_for(1)
    doc = Webhook(secret).verify(got.body, got.headers)
    assert doc["type"] == "webhook.test" and doc["data"]["webhook"] == hook_id
    assert got.headers["webhook-id"] == ping["message_id"]
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 300
    assert got.headers["Content-Type"] == "application/json"

    rotated = await hooks.call("POST", f"{BASE}/{hook_id}/rotate-secret")
    new = rotated["secret"]
    assert new != secret and rotated["webhook"]["previous_secret_until"] is not None
    await hooks.call("POST", f"{BASE}/{hook_id}/test")
    second = (await receiver.wait_for(2))[1]
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(second.body, second.headers)
    Webhook(secret).verify(second.body, second.headers)  # the old one, during the grace period

    hooks.svc.endpoints.config = type(hooks.svc.config)(
        **{**hooks.svc.config.__dict__, "secret_grace_s": 0.0}
    )
    newest = (await hooks.call("POST", f"{BASE}/{hook_id}/rotate-secret"))["secret"]
    await hooks.call("POST", f"{BASE}/{hook_id}/test")
    third = (await receiver.wait_for(3))[2]
    Webhook(newest).verify(third.body, third.headers)
    for old in (secret, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(third.body, third.headers)

    log = await hooks.call("GET", f"{BASE}/{hook_id}/deliveries?limit=2")
    assert [d["type"] for d in log["items"]] == ["webhook.test"] * 2 and log["next_before"] is not None
    rest = await hooks.call("GET", f"{BASE}/{hook_id}/deliveries?before={log['next_before']}")
    assert len(rest["items"]) == 1 and rest["next_before"] is None
    async with hooks.client.app[SESSIONS]() as s:
        assert (await s.execute(select(func.count()).select_from(WebhookDelivery))).scalar_one() == 3


async def test_a_failing_ping_says_why(hooks: Hooks, receiver: Receiver) -> None:
    receiver.script = [500]
    hook_id = (await hooks.create(receiver.url()))["webhook"]["id"]
    ping = await hooks.call("POST", f"{BASE}/{hook_id}/test")
    assert ping["status"] == "failed" and ping["last_status_code"] == 500 and ping["error"] == "HTTP 500"
    assert ping["next_attempt_at"] is None  # a ping is not retried
    hook = await hooks.call("GET", f"{BASE}/{hook_id}")
    assert hook["consecutive_failures"] == 0 and hook["enabled"]  # nor does it count toward disabling
