"""A pack's state history is bounded per request: the detail inlines the newest changes, the rest page."""

from __future__ import annotations

from typing import Any

from registry.api.keys import SESSIONS
from registry.db.base import utcnow
from registry.db.listings import find_listing
from registry.db.models import PackState, PackStateChange
from registry.packs.browse import DETAIL_HISTORY
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARDS = [("model.safetensors", helpers.shard_bytes(1000, 1))]
EXTRA = DETAIL_HISTORY + 12


async def test_pack_state_history_is_bounded_and_pages(reg: Registry) -> None:
    out = await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", SHARDS)
    cid = out["cid"]
    async with reg.client.app[SESSIONS]() as s, s.begin():
        model_id = (await find_listing(s, cid)).model_id
        for i in range(EXTRA):
            s.add(
                PackStateChange(
                    model_id=model_id,
                    pack_cid=cid,
                    from_state=PackState.AVAILABLE,
                    to_state=PackState.AVAILABLE,
                    reason=f"churn {i}",
                    actor="test",
                    at=utcnow(),
                )
            )
    total = EXTRA + 2  # received, available

    detail = await (await reg.client.get(f"/v1/packs/{cid}")).json()
    inline = detail["history"]
    assert len(inline) == DETAIL_HISTORY
    assert inline[-1]["reason"] == f"churn {EXTRA - 1}"  # the newest, oldest first as before
    assert [h["id"] for h in inline] == sorted(h["id"] for h in inline)
    assert detail["history_next_cursor"]

    # the continuation from the detail reaches exactly the older changes
    r = await reg.client.get(
        f"/v1/packs/{cid}/history", params={"cursor": detail["history_next_cursor"], "limit": "100"}
    )
    assert r.status == 200, await r.text()
    older = await r.json()
    assert [h["to"] for h in older["items"][-2:]] == ["available", "received"]
    assert len(older["items"]) == total - DETAIL_HISTORY and older["next_cursor"] is None

    # the whole history, a small page at a time, newest first
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(total):
        params = {"limit": "7"} | ({"cursor": cursor} if cursor else {})
        page = await (await reg.client.get(f"/v1/packs/{cid}/history", params=params)).json()
        assert len(page["items"]) <= 7
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == total
    assert [h["id"] for h in seen] == sorted((h["id"] for h in seen), reverse=True)
    assert seen[-1]["from"] is None and seen[-1]["to"] == "received"


async def test_pack_history_refuses_bad_input(reg: Registry) -> None:
    out = await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", SHARDS)
    detail = await (await reg.client.get(f"/v1/packs/{out['cid']}")).json()
    assert detail["history_next_cursor"] is None and len(detail["history"]) == 2
    r = await reg.client.get(f"/v1/packs/{out['cid']}/history", params={"cursor": "not-ours"})
    assert r.status == 400
    r = await reg.client.get(f"/v1/packs/{out['cid']}/history", params={"limit": "0"})
    assert r.status == 400
    missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    r = await reg.client.get(f"/v1/packs/{missing}/history")
    assert r.status == 404
