"""Pin requests of the Pinning Service API: add, get, list, replace, delete, per publisher with quotas.

No HTTP here. A pin is a replication unit of its own (registry.pinning.replicate places it); a deleted or
replaced pin is hidden at once and its row kept until its CID is unpinned where nothing else needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import ColumnElement, and_, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.states import ReplicaState
from registry.db.base import utcnow
from registry.db.engine import readonly_session, sqlite_write_lock, write_session
from registry.db.models import Replica
from registry.db.pins import Pin, PinStatus, PinUsage
from registry.errors import Conflict, NotFound
from registry.jobs.fastpath import Plan, runner_for
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import JobQueue
from registry.pinning import adds
from registry.pinning.config import PinningConfig
from registry.pinning.requests import PinFilter, PinRequest, replication_target, shown

ADD_BATCH_MAX = 256  # pin adds committed together at most (group commit)


class QuotaExceeded(Conflict):
    """The spec's 409: the publisher's pin count or byte quota is used up."""

    code = "insufficient_funds"


class PinNotFound(NotFound):
    code = "not_found"


class PinFields(Protocol):
    """What a view is made of: a ``Pin`` row, or a result row of ``VIEW_COLUMNS``."""

    @property
    def requestid(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def created(self) -> datetime: ...
    @property
    def cid(self) -> str: ...
    @property
    def cid_key(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def origins(self) -> list[str]: ...
    @property
    def meta(self) -> dict[str, str]: ...
    @property
    def info(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class PinView:
    """One pin as the API shows it (delegates are added by the caller, from ``holders``)."""

    requestid: str
    status: PinStatus
    created: datetime
    cid: str
    cid_key: str
    name: str | None
    origins: tuple[str, ...]
    meta: dict[str, str]
    info: dict[str, str]
    holders: frozenset[int] | None = (
        None  # nodes pinning its CID, when read with it (else: PinService.holders)
    )

    FIELDS: ClassVar[tuple[str, ...]] = ("requestid", "status", "created", "cid", "cid_key", "name")

    @classmethod
    def of(cls, row: PinFields) -> PinView:
        return cls(
            row.requestid,
            PinStatus(row.status),
            row.created,
            row.cid,
            row.cid_key,
            row.name,
            tuple(row.origins or ()),
            dict(row.meta or {}),
            {k: str(v) for k, v in (row.info or {}).items()},
        )


VIEW_COLUMNS = (
    Pin.requestid,
    Pin.status,
    Pin.created,
    Pin.cid,
    Pin.cid_key,
    Pin.name,
    Pin.origins,
    Pin.meta,
    Pin.info,
)


def _view(v: dict[str, Any], held: dict[str, set[int]]) -> PinView:
    """The view of a pin just inserted with values ``v``."""
    return PinView(
        v["requestid"],
        v["status"],
        v["created"],
        v["cid"],
        v["cid_key"],
        v["name"],
        tuple(v["origins"]),
        dict(v["meta"]),
        dict(v["info"]),
        frozenset(held.get(v["cid_key"], ())),
    )


_PendingAdd = tuple[int, PinRequest, "asyncio.Future[PinView]"]  # publisher id, request, its caller's result


def enqueue_pin(queue: JobQueue, requestid: str, session: AsyncSession | None = None) -> Any:
    """The pin's job (deduplicated); with ``session``, in the caller's transaction (row and job commit together)."""
    return queue.enqueue(
        JobKind.PIN, {"requestid": requestid}, dedupe_key=JobKind.PIN.key(requestid), session=session
    )


class PinService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        queue: JobQueue,
        config: PinningConfig = PinningConfig(),
    ) -> None:
        self._sessions = sessions
        self._queue = queue
        self.config = config
        bind = sessions.kw.get("bind")
        self._dialect = bind.dialect.name if bind is not None else "sqlite"
        self._runner = runner_for(sessions)  # adds: one transaction per batch on the raw driver
        self._pending: list[_PendingAdd] = []
        self._flusher: asyncio.Task[None] | None = None

    async def _usage(self, s: AsyncSession, publisher_id: int) -> tuple[int, int]:
        """(pins held, their bytes) of the publisher."""
        row = (
            await s.execute(
                select(PinUsage.pins, PinUsage.bytes).where(PinUsage.publisher_id == publisher_id)
            )
        ).one_or_none()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def _check(self, count: int, size: int) -> None:
        if count >= self.config.max_pins:
            raise QuotaExceeded(
                f"this publisher holds {count} pins, the quota is {self.config.max_pins}: delete some first",
                pins=count,
            )
        if size >= self.config.max_bytes:
            raise QuotaExceeded(
                f"this publisher's pins hold {size} bytes, the quota is {self.config.max_bytes}",
                bytes=size,
            )

    async def _check_quota(self, s: AsyncSession, publisher_id: int, freed: int = 0) -> None:
        count, size = await self._usage(s, publisher_id)
        self._check(count - freed, size)

    def _values(self, publisher_id: int, req: PinRequest, replaces: str | None = None) -> dict[str, Any]:
        """The new pin's row (every column the view shows set here: nothing is read back after the insert)."""
        target = replication_target(req.meta, self.config)
        explicit = any(k in req.meta for k in ("replication_min", "replication_max"))
        now = utcnow()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as shown: before/after compare alike
        return {
            "requestid": str(uuid.uuid4()),
            "publisher_id": publisher_id,
            "cid": req.cid,
            "cid_key": req.cid_key,
            "name": req.name,
            "origins": list(req.origins),
            "meta": dict(req.meta),
            "status": PinStatus.QUEUED,
            "info": {"status_details": "queued: waiting for a worker to place it on the nodes"},
            "replication_min": target.min if explicit else None,
            "replication_max": target.max if explicit else None,
            "replaces": replaces,
            "created": now,
            "updated_at": now,
        }

    @staticmethod
    def _job(requestid: str) -> tuple[dict[str, Any], str]:
        return {"requestid": requestid}, JobKind.PIN.key(requestid)

    async def _insert(self, s: AsyncSession, rows: list[dict[str, Any]]) -> list[PinView]:
        """Inserts the rows (Core, one statement), queues their jobs and reads their CIDs' holders, all in the
        caller's transaction; the views are made of the values themselves (nothing is read back)."""
        if not rows:
            return []
        await s.execute(insert(Pin), rows)
        jobs = [self._job(v["requestid"]) for v in rows]
        await self._queue.enqueue_many(JobKind.PIN, jobs, session=s)
        held = await self._holders_in(s, [v["cid_key"] for v in rows])
        return [_view(v, held) for v in rows]

    async def add(self, publisher_id: int, req: PinRequest) -> PinView:
        """Adds the pin. Concurrent adds share one transaction (group commit: ``ipfs pin remote add`` loops and
        bulk clients pay one BEGIN/COMMIT per batch, not per pin); each keeps its own quota check and result."""
        fut: asyncio.Future[PinView] = asyncio.get_running_loop().create_future()
        self._pending.append((publisher_id, req, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="pin adds")
        return await fut

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:ADD_BATCH_MAX], self._pending[ADD_BATCH_MAX:]
            await self._add_batch(batch)

    async def _add_batch(self, batch: list[_PendingAdd]) -> None:
        try:
            # SQLite: the batch waits its turn behind this process's other writers (sqlite_write_lock)
            async with sqlite_write_lock(self._sessions) or contextlib.nullcontext():
                # on Postgres each step is its own transaction: the writes are one statement (adds.insert); the
                # quota's read before it sees what a read in the same transaction would (read committed)
                results: list[PinView | Exception] = await self._runner.plan(
                    self._add_plan(batch), atomic=False
                )
        except Exception as e:
            if len(batch) > 1:  # one bad row must not fail the others: each alone
                for item in batch:
                    await self._add_batch([item])
                return
            results = [e]
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():  # its caller went away; the pin stands, as any write finished after a disconnect
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def _add_plan(self, batch: list[_PendingAdd]) -> Plan[list[PinView | Exception]]:
        """The batch's transaction: each add's quota check in arrival order, one insert of the admitted rows,
        their jobs and their CIDs' holders (the views are made of the values: nothing is read back)."""
        usage: dict[int, tuple[int, int]] = {}
        outcome: list[dict[str, Any] | QuotaExceeded] = []
        for publisher_id, req, _ in batch:
            if publisher_id not in usage:
                usage[publisher_id] = yield from adds.usage(publisher_id)
            count, size = usage[publisher_id]
            try:
                self._check(count, size)
            except QuotaExceeded as e:
                outcome.append(e)
                continue
            usage[publisher_id] = (count + 1, size)
            outcome.append(self._values(publisher_id, req))
        rows = [o for o in outcome if isinstance(o, dict)]
        held: dict[str, set[int]] = {}
        if rows:
            jobs, job_rows = self._queue.enqueue_rows(JobKind.PIN, [self._job(v["requestid"]) for v in rows])
            held = yield from adds.insert(rows, jobs, job_rows, self._dialect)
        return [o if isinstance(o, QuotaExceeded) else _view(o, held) for o in outcome]

    async def _mine(self, s: AsyncSession, publisher_id: int, requestid: str, *, lock: bool = False) -> Pin:
        q = select(Pin).where(Pin.requestid == requestid[:64], Pin.deleted_at.is_(None))
        row = (await s.execute(q.with_for_update() if lock else q)).scalar_one_or_none()
        if row is None or row.publisher_id != publisher_id or len(requestid) > 64:
            # another publisher's pin is "not found" too: request ids never leak
            raise PinNotFound(
                f"no pin with requestid {shown(requestid, 64)!r}", requestid=shown(requestid, 64)
            )
        return row

    async def get(self, publisher_id: int, requestid: str) -> PinView:
        async with readonly_session(self._sessions) as s:
            return PinView.of(await self._mine(s, publisher_id, requestid))

    async def replace(self, publisher_id: int, requestid: str, req: PinRequest) -> PinView:
        """A new pin for ``req``; the old one is hidden now and unpinned once the new one settles."""
        async with write_session(self._sessions) as s:
            old = await self._mine(s, publisher_id, requestid, lock=True)
            await self._check_quota(s, publisher_id, freed=1)
            old.deleted_at = utcnow()
            (view,) = await self._insert(s, [self._values(publisher_id, req, replaces=old.requestid)])
            await enqueue_pin(self._queue, old.requestid, s)
        return view

    async def delete(self, publisher_id: int, requestid: str) -> None:
        async with write_session(self._sessions) as s:
            row = await self._mine(s, publisher_id, requestid, lock=True)
            row.deleted_at = utcnow()
            await enqueue_pin(self._queue, row.requestid, s)

    async def holders(self, keys: list[str]) -> dict[str, set[int]]:
        """CID key -> the nodes that pin it (for each pin's delegates)."""
        if not keys:
            return {}
        async with readonly_session(self._sessions) as s:
            return await self._holders_in(s, keys)

    @staticmethod
    async def _holders_in(s: AsyncSession, keys: list[str]) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        rows = await s.execute(
            select(Replica.cid, Replica.node_id).where(
                Replica.cid.in_(sorted(set(keys))), Replica.state == ReplicaState.PINNED
            )
        )
        for cid, nid in rows:
            out.setdefault(cid, set()).add(nid)
        return out

    async def list_pins(self, publisher_id: int, f: PinFilter) -> tuple[int, list[PinView]]:
        """(how many match, the newest ``f.limit`` of them); no filter at all lists pinned ones only."""
        async with readonly_session(self._sessions) as s:
            where = self._where(s, publisher_id, f)
            count = (await s.execute(select(func.count(Pin.id)).where(where))).scalar_one()
            # columns, not ORM entities: a page of 1000 pins is built without identity-map bookkeeping
            page = select(*VIEW_COLUMNS).where(where).order_by(Pin.created.desc(), Pin.id.desc())
            rows = await s.execute(page.limit(f.limit))
            return int(count), [PinView.of(r) for r in rows]

    def _where(self, s: AsyncSession, publisher_id: int, f: PinFilter) -> ColumnElement[bool]:
        conds: list[ColumnElement[bool]] = [Pin.publisher_id == publisher_id, Pin.deleted_at.is_(None)]
        statuses = f.statuses or ((PinStatus.PINNED,) if f.unfiltered else ())
        if statuses:
            conds.append(Pin.status.in_(statuses))
        if f.cids:
            conds.append(Pin.cid_key.in_(f.cids))
        if f.before is not None:
            conds.append(Pin.created < f.before)
        if f.after is not None:
            conds.append(Pin.created > f.after)
        if f.name is not None:
            conds.append(self._name_match(s, f.name, f.match))
        for key, value in (f.meta or {}).items():
            conds.append(Pin.meta[key].as_string() == value)
        return and_(*conds)

    @staticmethod
    def _name_match(s: AsyncSession, name: str, match: str) -> ColumnElement[bool]:
        if match == "exact":
            return Pin.name == name
        if match == "iexact":
            return func.lower(Pin.name) == name.lower()
        column, text = (Pin.name, name) if match == "partial" else (func.lower(Pin.name), name.lower())
        # case-sensitive substring on both databases (SQLite's LIKE ignores ASCII case)
        postgres = s.bind is not None and s.bind.dialect.name == "postgresql"
        find = func.strpos if postgres else func.instr
        return find(column, text) > 0
