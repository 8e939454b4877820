"""Numbers too long for Python's int() (over 4,300 digits) are a 4xx, never a 500."""

from __future__ import annotations

from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

HUGE = "9" * 5000


async def test_a_publish_body_with_a_huge_integer_is_a_400(reg: Registry) -> None:
    raw = '{"manifest": {"format": "safetensors", "model_version": ' + HUGE + "}}"
    r = await reg.client.post(
        "/v1/models/acme/m/packs",
        data=raw,
        headers={**helpers.bearer(reg.alice), "Content-Type": "application/json"},
    )
    # The same status and code as any other body that is not JSON the strict parser accepts.
    assert r.status == 422, await r.text()
    err = (await r.json())["error"]
    assert (
        err["code"] == "invalid_manifest" and "4,300 digits" in err["message"] and len(err["message"]) < 500
    )


async def test_a_huge_page_limit_is_a_400(reg: Registry) -> None:
    r = await reg.client.get(f"/v1/models?limit={HUGE}")
    assert r.status == 400
    err = (await r.json())["error"]
    assert err["code"] == "bad_request" and len(err["message"]) < 200
