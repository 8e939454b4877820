"""Clocks while the daemon runs: enqueue a recurring job every N seconds (the dedupe key keeps one queued
copy however many daemons share the database), or run an in-process check every N seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from registry.jobs.protocol import JobQueue

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def _task(name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    task = asyncio.create_task(body(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def enqueue_every(
    queue: JobQueue, kind: str, interval_s: float
) -> contextlib.AbstractAsyncContextManager[None]:
    """While the context is open, enqueue ``kind`` every ``interval_s``; several daemons queue it once."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await queue.enqueue(kind, {}, dedupe_key=kind)
            except Exception:  # the database may be briefly away; try again next round
                log.exception("could not enqueue the periodic %s job", kind)

    return _task(f"periodic {kind}", loop)


def run_every(
    name: str, fn: Callable[[], Awaitable[Any]], interval_s: float
) -> contextlib.AbstractAsyncContextManager[None]:
    """While the context is open, await ``fn()`` at once and then every ``interval_s`` (errors are logged)."""

    async def loop() -> None:
        while True:
            try:
                await fn()
            except Exception:  # a node or the database may be briefly away; the next round tries again
                log.exception("%s round failed", name)
            await asyncio.sleep(interval_s)

    return _task(f"every {name}", loop)
