"""Enqueue a recurring job every N seconds while the daemon runs (the dedupe key keeps one queued copy)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from registry.jobs.protocol import JobQueue

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def enqueue_every(queue: JobQueue, kind: str, interval_s: float) -> AsyncIterator[None]:
    """While the context is open, enqueue ``kind`` every ``interval_s``; several daemons queue it once."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await queue.enqueue(kind, {}, dedupe_key=kind)
            except Exception:  # the database may be briefly away; try again next round
                log.exception("could not enqueue the periodic %s job", kind)

    task = asyncio.create_task(loop(), name=f"periodic {kind}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
