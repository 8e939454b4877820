"""The periodic enqueue loop: enqueues under the kind as its dedupe key, survives errors, stops with its context."""

from __future__ import annotations

import asyncio
from typing import Any

from registry.jobs.periodic import enqueue_every


class FlakyQueue:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    async def enqueue(self, kind: str, payload: dict[str, Any], *, dedupe_key: str | None = None) -> int:
        self.calls.append((kind, dedupe_key))
        if len(self.calls) == 1:
            raise ConnectionError("database briefly away")
        return len(self.calls)


async def test_enqueues_repeatedly_despite_errors_and_stops_on_exit() -> None:
    queue = FlakyQueue()
    async with enqueue_every(queue, "sweep", 0.01):
        async with asyncio.timeout(10):
            while len(queue.calls) < 3:
                await asyncio.sleep(0.01)
    n = len(queue.calls)
    await asyncio.sleep(0.05)
    assert len(queue.calls) == n  # the loop ended with the context
    assert set(queue.calls) == {("sweep", "sweep")}
