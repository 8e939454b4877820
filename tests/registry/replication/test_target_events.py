"""#15 item 1: a pack reaching its replication target, and losing it, is one event per change for each of its
listings (``replication.satisfied`` / ``replication.lost``), written by the replicate job."""

from __future__ import annotations

from typing import Any

import pytest

from registry.events import store
from registry.jobs.protocol import ClaimedJob, RetryJob
from tests.registry.replication.conftest import Harness


async def target_events(harness: Harness) -> list[tuple[str, str | None, dict[str, Any]]]:
    async with harness.sessions() as s:
        rows = await store.page(s, types=("replication.satisfied", "replication.lost"), limit=100)
    return [(e.type, e.model, e.payload) for e in rows]


def job(cid: str) -> ClaimedJob:
    return ClaimedJob(
        id=1, kind="replicate", payload={"pack": cid}, attempts=1, max_attempts=5, lease_token="t"
    )


async def test_reached_then_lost_then_reached_again(harness: Harness) -> None:
    a, b = await harness.add_fake("a"), await harness.add_fake("b")
    b.forget_pins = True
    cid = await harness.make_pack()
    with pytest.raises(RetryJob):
        await harness.service.replicate(job(cid))  # 1 of min 2: never reached, so nothing was lost
    assert await target_events(harness) == []
    b.forget_pins = False
    await harness.service.replicate(job(cid))
    await harness.service.replicate(job(cid))  # still satisfied: no second event
    ((kind, model, payload),) = await target_events(harness)
    assert (kind, model, payload["min_pinned"], payload["replication_min"]) == (
        "replication.satisfied", "acme/m", 2, 2,
    )  # fmt: skip
    a.pins.clear()  # a restarted node lost its pins, and will not keep new ones for a while
    a.forget_pins = True
    await harness.service.reconciler.reconcile_all()
    with pytest.raises(RetryJob):
        await harness.service.replicate(job(cid))
    lost = (await target_events(harness))[1]
    assert lost[0] == "replication.lost" and lost[2]["below"] and lost[2]["min_pinned"] == 1, lost
    a.forget_pins = False
    await harness.service.replicate(job(cid))
    assert [k for k, _, _ in await target_events(harness)] == [
        "replication.satisfied",
        "replication.lost",
        "replication.satisfied",
    ]
