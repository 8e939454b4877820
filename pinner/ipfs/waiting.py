"""Waiting for an orchestrator (IPFS Cluster, a pinning service) to finish a pin, with a no-progress bound.

Orchestrators pin asynchronously: we ask, then poll. Like IPFS Cluster's `pin_timeout`, the bound is
on *progress* (a state change or one more replica), not on the total time, so a large DAG that keeps
moving is never cut off while a stuck one fails in bounded time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pinner.ipfs.errors import PinFailedError, PinStalledError
from pinner.ipfs.protocol import PinState, PinStatus, ProgressCallback


async def wait_for_pin(
    fetch: Callable[[], Awaitable[PinStatus]],
    *,
    cid: str,
    node_url: str,
    poll_interval: float,
    no_progress_timeout: float,
    min_replicas: int = 1,
    on_progress: ProgressCallback | None = None,
) -> PinStatus:
    """Poll `fetch` until the CID is pinned on `min_replicas` peers; typed errors on failure or stall.

    `on_progress` receives the number of peers that report the CID pinned, each time it grows.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + no_progress_timeout
    last: tuple[PinState, int] | None = None
    while True:
        status = await fetch()
        mark = (status.state, status.replicas)
        if mark != last:
            if on_progress is not None and (last is None or status.replicas > last[1]):
                on_progress(status.replicas)
            last = mark
            deadline = loop.time() + no_progress_timeout
        if status.state is PinState.PINNED and status.replicas >= min_replicas:
            return status
        if status.state is PinState.FAILED:
            raise PinFailedError(
                f"{node_url} failed to pin {cid}: {status.error or 'no reason given'}",
                node_url=node_url,
                cid=cid,
                node_message=status.error,
            )
        if loop.time() >= deadline:
            raise PinStalledError(
                f"pin of {cid} on {node_url} made no progress for {no_progress_timeout:g}s "
                f"(state {status.state}, {status.replicas} replicas)",
                node_url=node_url,
                cid=cid,
            )
        await asyncio.sleep(min(poll_interval, max(deadline - loop.time(), 0.0)))
