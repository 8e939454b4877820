"""Pointers (``ns/model@tag`` -> pack CID): the resolve hot path, compare-and-swap moves and their history.

``curated`` is reserved for the validation gate; ``latest`` is moved by every successful publish.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import String, and_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.accounts.auth import require_namespace
from registry.accounts.principal import Principal
from registry.cache import CacheConfig, TtlCache
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.fastread import FastReads, Query
from registry.db.listings import listing_in
from registry.db.models import Model, Namespace, Pack, PackState, Pointer, PointerChange
from registry.db.naming import model_key_is, model_named, namespace_key_is, namespace_named
from registry.errors import Conflict, NotFound, PointerReserved, PreconditionFailed
from registry.events import store as events
from registry.names import ModelRef, check_tag, name_key

# The hot path, compiled once: namespace + model + tag -> cid, through unique indexes.
_RESOLVE = Query(
    select(Pointer.pack_cid, Pointer.updated_at, Pointer.updated_by, Namespace.name, Model.name)
    .join(Model, Model.id == Pointer.model_id)
    .join(Namespace, Namespace.id == Model.namespace_id)
    .where(namespace_key_is("ns"), model_key_is("model"), Pointer.tag == bindparam("tag"))
)

# Postgres: the resolves that waited together, in one statement (registry.db.coalesce): the keys as three
# arrays, each row tagged with its key's position. Each key is a nested loop of the same unique-index lookups.
_KEYS = (
    func.unnest(*(bindparam(n, type_=ARRAY(String)) for n in ("ns", "model", "tag")))
    .table_valued("ns", "model", "tag", with_ordinality="i")
    .render_derived(name="k")
)
_RESOLVE_MANY = Query(
    select(_KEYS.c.i, Pointer.pack_cid, Pointer.updated_at, Pointer.updated_by, Namespace.name, Model.name)
    .select_from(_KEYS)
    .join(Namespace, func.lower(Namespace.name) == _KEYS.c.ns)
    .join(Model, and_(Model.namespace_id == Namespace.id, func.lower(Model.name) == _KEYS.c.model))
    .join(Pointer, and_(Pointer.model_id == Model.id, Pointer.tag == _KEYS.c.tag))
)

PointerKey = tuple[str, str, str]  # namespace, model (both case-folded: registry.names.name_key), tag

RESERVED_TAGS: Final = frozenset({"curated"})
ANY: Final = object()  # move without a precondition

# Called inside the mover's transaction after a pointer moved: (session, model_id, tag, to_cid).
# The composition root passes the IPNS channels' hook (registry.ipns.channels).
PointerMoved = Callable[[AsyncSession, int, str, str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class PointerView:
    namespace: str
    model: str
    tag: str
    cid: str
    updated_at: datetime
    updated_by: str | None


@dataclass(frozen=True, slots=True)
class PointerChangeView:
    id: int
    tag: str
    from_cid: str | None
    to_cid: str | None
    actor: str | None
    reason: str | None
    at: datetime


def check_settable(tag: str) -> str:
    check_tag(tag)
    if tag in RESERVED_TAGS:
        raise PointerReserved(
            f"the {tag!r} pointer is reserved: only the validation gate moves it (modelpack curate)", tag=tag
        )
    return tag


async def move_pointer(
    session: AsyncSession,
    model_id: int,
    tag: str,
    to_cid: str,
    *,
    actor: str | None,
    reason: str | None,
    expected: object = ANY,
    on_moved: PointerMoved | None = None,
) -> bool:
    """Points ``tag`` at ``to_cid`` inside the caller's transaction; False when it already pointed there.

    ``expected``: the CID the pointer must hold now (None: must not exist); PreconditionFailed otherwise.
    """
    row = (
        await session.execute(select(Pointer).where(Pointer.model_id == model_id, Pointer.tag == tag))
    ).scalar_one_or_none()
    current = row.pack_cid if row is not None else None
    if expected is not ANY and expected != current:
        raise PreconditionFailed(
            f"pointer {tag!r} is at {current or '(unset)'}, not {expected or '(unset)'}; read it again and retry",
            tag=tag,
            current=current,
        )
    if current == to_cid:
        return False
    now = utcnow()
    if row is None:
        session.add(Pointer(model_id=model_id, tag=tag, pack_cid=to_cid, updated_at=now, updated_by=actor))
    else:
        # The WHERE on the old value makes this a true compare-and-swap under concurrent writers.
        res = await session.execute(
            update(Pointer)
            .where(Pointer.id == row.id, Pointer.pack_cid == current)
            .values(pack_cid=to_cid, updated_at=now, updated_by=actor)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            raise PreconditionFailed(f"pointer {tag!r} moved concurrently; read it again and retry", tag=tag)
    session.add(
        PointerChange(
            model_id=model_id, tag=tag, from_cid=current, to_cid=to_cid, actor=actor, reason=reason, at=now
        )
    )
    await events.pointer_moved(session, model_id, tag, current, to_cid, actor=actor, reason=reason)
    if on_moved is not None:
        await on_moved(session, model_id, tag, to_cid)
    return True


async def model_id_of(session: AsyncSession, ref: ModelRef) -> int | None:
    return (
        await session.execute(
            select(Model.id)
            .join(Namespace, Namespace.id == Model.namespace_id)
            .where(namespace_named(ref.namespace), model_named(ref.model))
        )
    ).scalar_one_or_none()


class PointerService:
    """Reads and compare-and-swap writes of pointers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        reads: FastReads,
        on_moved: PointerMoved | None = None,
        cache: TtlCache[PointerKey, PointerView] | None = None,
    ) -> None:
        self._sessions = sessions
        self._reads = reads
        self._on_moved = on_moved
        self.cache: TtlCache[PointerKey, PointerView] = cache or TtlCache(CacheConfig(ttl_s=0))

    async def resolve(self, ref: ModelRef, tag: str) -> PointerView:
        """The hot path: a cache hit, else one indexed query on the raw driver (registry.db.fastread)."""
        check_tag(tag)
        key = (name_key(ref.namespace), name_key(ref.model), tag)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        view = await self._reads.batched("resolve", key, lambda: self._read(key), self._read_many)
        if view is None:
            raise NotFound(f"no pointer {ref}@{tag}", model=str(ref), tag=tag)
        self.cache.put(key, view)
        return view

    async def _read(self, key: PointerKey) -> PointerView | None:
        row = await self._reads.first(_RESOLVE, ns=key[0], model=key[1], tag=key[2])
        return (
            None if row is None else PointerView(row[3], row[4], key[2], row[0], row[1], row[2])
        )  # names as created

    async def _read_many(self, keys: list[PointerKey]) -> dict[PointerKey, PointerView | None]:
        found: dict[PointerKey, PointerView | None] = dict.fromkeys(keys)
        cols = list(zip(*keys, strict=True))
        for i, cid, at, by, ns, model in await self._reads.all(
            _RESOLVE_MANY, ns=cols[0], model=cols[1], tag=cols[2]
        ):
            key = keys[i - 1]  # WITH ORDINALITY counts from 1
            found[key] = PointerView(ns, model, key[2], cid, at, by)
        return found

    async def list_tags(self, ref: ModelRef) -> list[PointerView]:
        async with readonly_session(self._sessions) as s:
            mid = await model_id_of(s, ref)
            if mid is None:
                raise NotFound(f"no model {ref}", model=str(ref))
            rows = (
                await s.execute(select(Pointer).where(Pointer.model_id == mid).order_by(Pointer.tag))
            ).scalars()
            ns, name = (
                await s.execute(
                    select(Namespace.name, Model.name)
                    .join(Namespace, Namespace.id == Model.namespace_id)
                    .where(Model.id == mid)
                )
            ).one()  # the names as created
            return [PointerView(ns, name, p.tag, p.pack_cid, p.updated_at, p.updated_by) for p in rows]

    async def set(
        self,
        principal: Principal,
        ref: ModelRef,
        tag: str,
        cid: str,
        *,
        expected: object = ANY,
        reason: str | None = None,
    ) -> PointerView:
        """Moves ``ref@tag`` to ``cid`` (a pack of this model) if the pointer still holds ``expected``."""
        check_settable(tag)
        try:
            async with self._sessions() as s, s.begin():
                await require_namespace(s, principal, ref.namespace)
                mid = await model_id_of(s, ref)
                if mid is None:
                    raise NotFound(f"no model {ref}", model=str(ref))
                pack = await listing_in(s, mid, cid)
                if pack is None:
                    if (await s.execute(select(Pack.id).where(Pack.cid == cid).limit(1))).first() is None:
                        raise NotFound(f"no pack {cid}", cid=cid)
                    raise Conflict(f"pack {cid} is not published as {ref}; publish it there first", cid=cid)
                if pack.state in (PackState.RECEIVED, PackState.REJECTED):
                    raise Conflict(f"pack {cid} is {pack.state.value}; a pointer cannot name it", cid=cid)
                await move_pointer(
                    s,
                    mid,
                    tag,
                    cid,
                    actor=principal.publisher,
                    reason=reason,
                    expected=expected,
                    on_moved=self._on_moved,
                )
        except IntegrityError:  # lost a race to create the same pointer
            raise PreconditionFailed(
                f"pointer {tag!r} was created concurrently; read it and retry", tag=tag
            ) from None
        finally:
            self.cache.invalidate((name_key(ref.namespace), name_key(ref.model), tag))
        return await self.resolve(ref, tag)

    def forget_model(self, ref: ModelRef) -> None:
        """Drops cached pointers of a model (after a publish moved some of them)."""
        ns, model = name_key(ref.namespace), name_key(ref.model)
        self.cache.invalidate_where(lambda k: k[0] == ns and k[1] == model)

    async def history(
        self, ref: ModelRef, tag: str | None, *, after_id: int | None, limit: int
    ) -> list[PointerChangeView]:
        """Newest first; ``after_id`` is the cursor (the last id of the previous page)."""
        async with readonly_session(self._sessions) as s:
            mid = await model_id_of(s, ref)
            if mid is None:
                raise NotFound(f"no model {ref}", model=str(ref))
            q = select(PointerChange).where(PointerChange.model_id == mid)
            if tag is not None:
                q = q.where(PointerChange.tag == check_tag(tag))
            if after_id is not None:
                q = q.where(PointerChange.id < after_id)
            rows = (await s.execute(q.order_by(PointerChange.id.desc()).limit(limit))).scalars()
            return [
                PointerChangeView(c.id, c.tag, c.from_cid, c.to_cid, c.actor, c.reason, c.at) for c in rows
            ]
