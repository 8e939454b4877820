"""Runs claimed jobs: per-kind concurrency, a heartbeat that keeps the lease, graceful stop.

A handler that loses its lease is cancelled (another worker owns the job now), so a job never runs in
two places at once as long as the heartbeat interval is shorter than the lease. Losing it means either the
queue says so (``LeaseLost``) or ``lease_s`` passes without a successful heartbeat (the database is
unreachable, or a heartbeat hangs): past that point the job may be claimed elsewhere, so the handler stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from registry.jobs.protocol import ClaimedJob, JobQueue, LeaseLost, PermanentJobError, RetryJob

log = logging.getLogger(__name__)

Handler = Callable[[ClaimedJob], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 4
    poll_interval_s: float = 1.0
    heartbeat_s: float = 15.0
    lease_s: float | None = None  # the queue's lease; None: only an explicit LeaseLost cancels a handler
    kind_concurrency: Mapping[str, int] | None = None  # e.g. {"validate": 1}


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        config: WorkerConfig = WorkerConfig(),
        owner: str | None = None,
    ) -> None:
        self._queue = queue
        self._handlers = dict(handlers)
        self._config = config
        self.owner = owner or default_owner()
        self._running: dict[int, tuple[ClaimedJob, asyncio.Task[None]]] = {}
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def kinds(self) -> list[str]:
        """The job kinds this worker has a handler for."""
        return list(self._handlers)

    def wake(self) -> None:
        """Poll now (called after an enqueue in this process)."""
        self._wakeup.set()

    def _free_kinds(self) -> list[str]:
        if len(self._running) >= self._config.concurrency:
            return []
        per_kind = self._config.kind_concurrency or {}
        busy: dict[str, int] = {}
        for job, _ in self._running.values():
            busy[job.kind] = busy.get(job.kind, 0) + 1
        return [k for k in self._handlers if busy.get(k, 0) < per_kind.get(k, self._config.concurrency)]

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name=f"job-worker {self.owner}")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            kinds = self._free_kinds()
            job = None
            if kinds:
                try:
                    job = await self._queue.claim(kinds, self.owner)
                except Exception:
                    log.exception("job claim failed; retrying after the poll interval")
            if job is not None:
                task = asyncio.create_task(self._run(job), name=f"job {job.id} {job.kind}")
                self._running[job.id] = (job, task)
                task.add_done_callback(self._done_callback(job.id))
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._config.poll_interval_s)

    def _done_callback(self, job_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._running.pop(job_id, None)
            self._wakeup.set()

        return done

    async def _run(self, job: ClaimedJob) -> None:
        handler = self._handlers[job.kind]
        work: asyncio.Task[None] = asyncio.create_task(handler(job))
        beat = asyncio.create_task(self._heartbeat(job, work))
        try:
            await work
        except asyncio.CancelledError:
            if self._stopping.is_set() and not beat.done():
                await self._safe(self._queue.release(job), job, "release")
                log.info("job %s (%s) released at shutdown", job.id, job.kind)
                return
            log.warning("job %s (%s) cancelled: its lease was lost", job.id, job.kind)
            return
        except RetryJob as e:
            state = await self._safe(self._queue.fail(job, str(e), retry_in_s=e.delay_s), job, "fail")
            log.info("job %s (%s) will retry (%s): %s", job.id, job.kind, state, e)
        except PermanentJobError as e:
            await self._safe(self._queue.fail(job, str(e), permanent=True), job, "fail")
            log.warning("job %s (%s) failed permanently: %s", job.id, job.kind, e)
        except Exception as e:
            err = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"
            state = await self._safe(self._queue.fail(job, err), job, "fail")
            log.warning("job %s (%s) attempt %d failed (%s): %s", job.id, job.kind, job.attempts, state, e)
        else:
            await self._safe(self._queue.complete(job), job, "complete")
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _safe(self, aw: Awaitable[object], job: ClaimedJob, what: str) -> object:
        try:
            return await aw
        except LeaseLost:
            log.warning("job %s: could not %s, its lease was lost to another worker", job.id, what)
        except Exception:
            log.exception("job %s: could not %s", job.id, what)
        return None

    async def _heartbeat(self, job: ClaimedJob, work: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        lease_s = self._config.lease_s
        deadline = None if lease_s is None else loop.time() + lease_s  # the claim happened before this
        while not work.done():
            wait = self._config.heartbeat_s
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - loop.time()))
            await asyncio.sleep(wait)
            if deadline is not None and loop.time() >= deadline:
                log.warning(
                    "job %s (%s): lease lapsed with no heartbeat, cancelling the handler", job.id, job.kind
                )
                work.cancel()
                return
            sent_at = loop.time()
            try:
                if deadline is None:
                    await self._queue.heartbeat(job)
                else:
                    await asyncio.wait_for(self._queue.heartbeat(job), max(0.0, deadline - sent_at))
                    deadline = sent_at + (lease_s or 0.0)
            except LeaseLost:
                log.warning("job %s (%s): lease lost, cancelling the handler", job.id, job.kind)
                work.cancel()
                return
            except Exception:
                log.exception("job %s: heartbeat failed; will try again while the lease lasts", job.id)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def stop(self, grace_s: float) -> None:
        """Stop claiming; let running jobs finish for ``grace_s``, then cancel and release them."""
        self._stopping.set()
        self._wakeup.set()
        if self._loop_task is not None:
            await self._loop_task
        tasks = [t for _, t in self._running.values()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_s)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
