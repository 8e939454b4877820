"""#15: a pin's status changes are ``pin.status`` events, shown only to the pin's publisher (and global admins):
anonymous readers and other publishers never see another publisher's CIDs through the feed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from registry.api.keys import SESSIONS
from registry.db.pins import Pin, PinStatus
from registry.pinning.replicate import PinReplicator
from tests.registry.api import helpers
from tests.registry.pinning.conftest import Psa, raw_cid


async def pin_events(psa: Psa, tok: str | None) -> list[dict[str, Any]]:
    headers = psa.h(tok) if tok else {}
    r = await psa.client.get("/v1/events?type=pin.status", headers=headers)
    assert r.status == 200, await r.text()
    return list((await r.json())["items"])


async def test_status_changes_are_events_for_the_owner_only(psa: Psa) -> None:
    cid = raw_cid(b"private dataset")
    r = await psa.client.post("/psa/pins", json={"cid": cid, "name": "secret.bin"}, headers=psa.h(psa.alice))
    assert r.status == 202
    app = psa.client.app
    async with app[SESSIONS]() as s:
        pin = (await s.execute(select(Pin))).scalar_one()
    writer = PinReplicator(app[SESSIONS], None, None, None)  # type: ignore[arg-type]
    await writer._write(pin, status=PinStatus.PINNING, info={"status_details": "fetching"})
    await writer._write(pin, status=PinStatus.PINNING, info={"status_details": "3 blocks"})  # no change
    await writer._write(pin, status=PinStatus.FAILED, info={"status_details": "nobody has it"})

    mine = await pin_events(psa, psa.alice)
    assert [(e["payload"]["from"], e["payload"]["status"]) for e in mine] == [
        ("queued", "pinning"),
        ("pinning", "failed"),
    ]
    assert mine[1]["payload"]["details"] == "nobody has it" and mine[0]["payload"]["cid"] == cid
    assert await pin_events(psa, None) == [] and await pin_events(psa, psa.bob) == []
    admin = await helpers.token(app, "root", scopes=("admin",))
    assert len(await pin_events(psa, admin)) == 2
