"""The `pin` job: one PSA pin as a replication unit. Placed on our nodes to its target (fetched from its
origins and from our nodes that hold it), reported queued -> pinning -> pinned, or failed once its deadline
passes; a deleted (or replaced) pin is unpinned from the nodes where nothing else needs its CID, then its
row goes. Idempotent: a job killed anywhere is run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.ipfs.errors import NodeError
from pinner.ipfs.protocol import IpfsNode as BlockNode
from pinner.replication.audit import dag_block_cids
from pinner.replication.model import Target
from pinner.replication.placement import plan_unit
from pinner.states import NodeKind, NodeState, ReplicaState
from registry.db.base import utcnow
from registry.db.models import IpfsNode, Manifest, Publisher, Replica, Shard
from registry.db.pins import Pin, PinStatus
from registry.events import store as events
from registry.jobs.protocol import ClaimedJob, JobQueue, RetryJob
from registry.pinning.config import PinningConfig
from registry.pinning.delegates import NodeAddresses
from registry.pinning.service import enqueue_pin
from registry.replication.clients import BackendFactory
from registry.replication.rows import ReplicationConfig, mark_queued, set_rows, unpin_units
from registry.replication.summary import all_nodes, is_live, node_view, replica_view, replicas_for

log = logging.getLogger("modelpack.pinning")
REPORT_EVERY_S = 1.0
SIZE_WALK_MAX_BLOCKS = 100_000


async def dag_size(node: BlockNode, root: str) -> int | None:
    """Bytes of every block under ``root`` on ``node`` (None past SIZE_WALK_MAX_BLOCKS blocks)."""
    sizes: dict[str, int] = {}

    async def get(cid: str) -> bytes:
        if len(sizes) >= SIZE_WALK_MAX_BLOCKS:
            raise NodeError(f"more than {SIZE_WALK_MAX_BLOCKS} blocks", node_url=node.url)
        data = await node.get_block(cid)
        sizes[cid] = len(data)
        return data

    blocks = await dag_block_cids(root, get)
    if len(blocks) > SIZE_WALK_MAX_BLOCKS:
        return None
    for cid in blocks:  # raw leaves are named by their links, not read
        if cid not in sizes:
            sizes[cid] = (await node.stat_block(cid)).size
    return sum(sizes.values())


class PinReplicator:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        backends: BackendFactory,
        queue: JobQueue,
        addresses: NodeAddresses,
        config: PinningConfig = PinningConfig(),
        replication: ReplicationConfig = ReplicationConfig(),
    ) -> None:
        self._sessions = sessions
        self._backends = backends
        self._queue = queue
        self._addresses = addresses
        self.config = config
        self.replication = replication

    async def handle(self, job: ClaimedJob) -> None:
        rid = job.payload.get("requestid")
        if isinstance(rid, str):
            await self.run(rid)

    async def run(self, requestid: str) -> PinStatus | None:
        """One pass for the pin; its status after it (None once the row is gone)."""
        async with self._sessions() as s:
            pin = (await s.execute(select(Pin).where(Pin.requestid == requestid))).scalar_one_or_none()
        if pin is None:
            return None
        if pin.deleted_at is not None:
            await self._remove(pin)
            return None
        if pin.status is PinStatus.FAILED:
            return pin.status
        return await self._place(pin)

    # -- placing --------------------------------------------------------------------------------

    def _target(self, pin: Pin) -> Target:
        if pin.replication_min is not None and pin.replication_max is not None:
            return Target(pin.replication_min, pin.replication_max)
        return self.config.target

    async def _write(self, pin: Pin, **values: Any) -> None:
        async with self._sessions() as s, s.begin():
            live = (Pin.id == pin.id, Pin.deleted_at.is_(None))
            before = (await s.execute(select(Pin.status).where(*live))).scalar_one_or_none()
            await s.execute(update(Pin).where(*live).values(**values))
            status = values.get("status")
            if before is not None and status is not None and status is not before:
                await pin_status_event(s, pin, before, status, values.get("info"))

    async def _place(self, pin: Pin) -> PinStatus:
        now = utcnow()
        deadline = pin.created + timedelta(seconds=self.config.pin_timeout_s)
        async with self._sessions() as s:
            node_rows = {n.id: n for n in await all_nodes(s) if n.kind is not NodeKind.EMBEDDED}
            reps = await replicas_for(s, [pin.cid_key])
        plan = plan_unit(
            pin.cid_key,
            pin.size or 0,
            self._target(pin),
            [node_view(n) for n in node_rows.values()],
            [replica_view(r) for r in reps],
            now=now,
            down_grace=self.replication.down_grace,
            max_failed_attempts=self.replication.max_failed_attempts,
        )
        if not node_rows:
            return await self._not_yet(
                pin, deadline, "no IPFS node is configured to pin on (modelpack node add)"
            )
        if plan.satisfied and not plan.add:
            if pin.status is not PinStatus.PINNED:
                await self._pinned(pin, plan.counted, {})
            return PinStatus.PINNED
        if now >= deadline:
            return await self._fail(pin, "no node pinned it before the deadline", {})
        adds = [node_rows[nid] for nid in plan.add]
        if not adds:
            return await self._not_yet(pin, deadline, "no usable node (all down, draining or full)")
        await mark_queued(self._sessions, {n.id: [pin.cid_key] for n in adds})
        holders = {r.node_id for r in reps if r.state is ReplicaState.PINNED}
        known = await self._addresses.by_node()
        origins = tuple(dict.fromkeys([*pin.origins, *(a for nid in holders for a in known.get(nid, ()))]))
        progress: dict[int, int] = {}
        details = f"pinning on {len(adds)} node(s), fetching from {len(origins)} origin(s)"
        await self._write(pin, status=PinStatus.PINNING, info={"status_details": details})
        remaining = (deadline - now).total_seconds()
        async with self._reporting(pin, details, progress):
            results = await asyncio.gather(
                *(self._pin_on(n, pin, origins, remaining, progress) for n in adds)
            )
        errors = {n.name: e for n, e in zip(adds, results, strict=True) if e is not None}
        pinned = plan.counted + sum(1 for e in results if e is None)
        if pinned >= plan.target.min:
            return await self._pinned(pin, pinned, progress)
        if utcnow() >= deadline:
            return await self._fail(pin, "not pinned before the deadline", errors)
        raise RetryJob(
            f"pin {pin.requestid} not pinned yet: " + "; ".join(f"{k}: {v}" for k, v in errors.items())
        )

    @contextlib.asynccontextmanager
    async def _reporting(self, pin: Pin, details: str, progress: dict[int, int]) -> AsyncIterator[None]:
        """While the nodes fetch: the blocks they report land in the pin's info about once a second."""

        async def report() -> None:
            seen = -1
            while True:
                await asyncio.sleep(REPORT_EVERY_S)
                blocks = max(progress.values(), default=0)
                if blocks != seen:
                    seen = blocks
                    await self._write(pin, info={"status_details": details, "blocks": str(blocks)})

        task = asyncio.create_task(report())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pin_on(
        self, node: IpfsNode, pin: Pin, origins: tuple[str, ...], remaining: float, progress: dict[int, int]
    ) -> str | None:
        """Pin on one node within ``remaining`` seconds; None on success, else why not."""
        backend = self._backends.backend(node)
        await set_rows(self._sessions, node.id, [pin.cid_key], state=ReplicaState.PINNING)

        def on_progress(blocks: int) -> None:
            progress[node.id] = blocks

        error: str | None = None
        try:
            async with asyncio.timeout(remaining):
                await backend.pin(
                    pin.cid_key, name=f"psa {pin.requestid}", origins=origins, on_progress=on_progress
                )
        except TimeoutError:
            error = f"no copy found within {remaining:.0f}s (origins: {len(origins)})"
        except NodeError as exc:
            error = f"{exc.code}: {exc.message}"[:500]
        async with self._sessions() as s, s.begin():
            values: dict[str, Any] = (
                {"state": ReplicaState.PINNED, "pinned_at": utcnow(), "last_error": None}
                if error is None
                else {"state": ReplicaState.FAILED, "attempts": Replica.attempts + 1, "last_error": error}
            )
            await s.execute(
                update(Replica).where(Replica.node_id == node.id, Replica.cid == pin.cid_key).values(**values)
            )
        if error is not None:
            log.info("pin %s (%s) on %s: %s", pin.requestid, pin.cid, node.name, error)
        return error

    async def _size(self, pin: Pin) -> int | None:
        """Bytes of the pinned DAG, read back from a node that pins it (blocks summed)."""
        async with self._sessions() as s:
            rows = (
                await s.execute(
                    select(IpfsNode)
                    .join(Replica, Replica.node_id == IpfsNode.id)
                    .where(Replica.cid == pin.cid_key, Replica.state == ReplicaState.PINNED)
                )
            ).scalars()
            nodes = [n for n in rows if n.state is NodeState.UP]
        for node in nodes:
            backend = self._backends.backend(node)
            if isinstance(backend, BlockNode):
                with contextlib.suppress(NodeError):
                    return await dag_size(backend, pin.cid_key)
        return None

    async def _pinned(self, pin: Pin, nodes: int, progress: dict[int, int]) -> PinStatus:
        size = await self._size(pin)
        info = {"status_details": f"pinned on {nodes} node(s)"}
        if progress:
            info["blocks"] = str(max(progress.values()))
        if size is not None:
            info["bytes"] = str(size)
        await self._write(pin, status=PinStatus.PINNED, info=info, size=size, pinned_at=utcnow())
        self._addresses.forget()
        await self._settle_replaced(pin)
        return PinStatus.PINNED

    async def _fail(self, pin: Pin, reason: str, errors: dict[str, str]) -> PinStatus:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        text = f"failed: {reason}" + (f" ({detail})" if detail else "")
        await self._write(pin, status=PinStatus.FAILED, info={"status_details": text[:1000]})
        await self._settle_replaced(pin)
        return PinStatus.FAILED

    async def _not_yet(self, pin: Pin, deadline: datetime, why: str) -> PinStatus:
        if utcnow() >= deadline:
            return await self._fail(pin, why, {})
        await self._write(pin, info={"status_details": f"queued: {why}"})
        raise RetryJob(f"pin {pin.requestid}: {why}")

    async def _settle_replaced(self, pin: Pin) -> None:
        if pin.replaces:
            await enqueue_pin(self._queue, pin.replaces)

    # -- removing -------------------------------------------------------------------------------

    async def _needed(self, s: AsyncSession, pin: Pin) -> bool:
        """Whether anything but this pin needs its CID: another pin row, or a live pack's unit."""
        other = await s.execute(select(Pin.id).where(Pin.cid_key == pin.cid_key, Pin.id != pin.id).limit(1))
        if other.first() is not None:
            return True
        retention = timedelta(seconds=self.replication.gc_retention_s)
        users = set(
            (
                await s.execute(
                    select(Shard.pack_cid).where(or_(Shard.cid == pin.cid, Shard.cid == pin.cid_key))
                )
            ).scalars()
        )
        if await s.get(Manifest, pin.cid_key) is not None:  # a pack's content (its manifest)
            users.add(pin.cid_key)
        now = utcnow()
        for pack_cid in sorted(users):
            if await is_live(s, pack_cid, retention, now):
                return True
        return False

    async def _remove(self, pin: Pin) -> None:
        async with self._sessions() as s:
            successor = (
                await s.execute(
                    select(Pin.status).where(Pin.replaces == pin.requestid, Pin.deleted_at.is_(None))
                )
            ).scalar_one_or_none()
            if successor in (PinStatus.QUEUED, PinStatus.PINNING):
                return  # replaced: kept until the new pin settles (it queues this job again then)
            needed = await self._needed(s, pin)
            node_rows = {n.id: n for n in await all_nodes(s)}
            reps = [] if needed else await replicas_for(s, [pin.cid_key])
        away = []
        for r in reps:
            node = node_rows.get(r.node_id)
            if node is None:
                continue
            if node.state is not NodeState.UP:
                await set_rows(self._sessions, node.id, [pin.cid_key], state=ReplicaState.UNPINNING)
                away.append(node.name)
                continue
            done = await unpin_units(self._sessions, self._backends.backend(node), node.id, [pin.cid_key])
            if not done:
                away.append(node.name)
        if away:
            raise RetryJob(f"pin {pin.requestid}: not yet unpinned from {', '.join(away)}")
        async with self._sessions() as s, s.begin():
            await s.execute(delete(Pin).where(Pin.id == pin.id))
        log.info(
            "pin %s (%s) removed%s", pin.requestid, pin.cid, " (its CID is still needed)" if needed else ""
        )


async def pin_status_event(
    s: AsyncSession, pin: Pin, before: PinStatus, after: PinStatus, info: dict[str, Any] | None
) -> None:
    """``pin.status``: private to the pin's publisher (the feed shows it only to that publisher's tokens)."""
    publisher = (await s.execute(select(Publisher.name).where(Publisher.id == pin.publisher_id))).scalar_one()
    await events.record(
        s,
        "pin.status",
        actor=publisher,
        payload={
            "requestid": pin.requestid,
            "cid": pin.cid,
            "name": pin.name,
            "from": before.value,
            "status": after.value,
            "details": (info or {}).get("status_details"),
        },
    )
