"""The pack lifecycle: the state machine and every transition, with its history row, in one place.

State diagram (DESIGN.md): ``received -> available -> validated -> curated``, or ``rejected`` with the
reason. A curated pack that degrades (rollback) or is un-curated goes back to ``validated``; re-validation
may reject any pack that has bytes. Publish and fetch-by-CID both end in :func:`make_available`, which
moves the publish's pointers and queues the pack's replicate and validate jobs in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.models import Blob, BlobUploader, Model, Namespace, Pack, PackState, PackStateChange, Pointer
from registry.events import store as events
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import JobQueue
from registry.names import DEFAULT_TAG, ModelRef
from registry.packs.pointers import PointerMoved, move_pointer

ALLOWED: dict[PackState, frozenset[PackState]] = {
    PackState.RECEIVED: frozenset({PackState.AVAILABLE, PackState.REJECTED}),
    PackState.AVAILABLE: frozenset({PackState.VALIDATED, PackState.REJECTED}),
    PackState.VALIDATED: frozenset({PackState.CURATED, PackState.REJECTED}),
    PackState.CURATED: frozenset({PackState.VALIDATED, PackState.REJECTED}),
    PackState.REJECTED: frozenset({PackState.VALIDATED}),
}
RECEIVED_REASON = "manifest received"
AVAILABLE_REASON = "every shard's bytes are present and match its CID and sha256"
# the jobs an available pack needs: copies on the nodes, and the gate's verdict
AVAILABLE_JOBS = (JobKind.REPLICATE, JobKind.VALIDATE)


def may_move(src: PackState, dst: PackState) -> bool:
    return dst in ALLOWED[src]


def event_type(src: PackState | None, to: PackState) -> str:
    """The event a move emits: curated -> validated is an un-curation (the gate's rollback says degraded)."""
    if src is None:
        return "pack.published"
    if to is PackState.VALIDATED and src is PackState.CURATED:
        return "pack.uncurated"
    return f"pack.{to.value}"


async def set_state(
    session: AsyncSession, pack: Pack, to: PackState, reason: str, actor: str, *, event: str | None = None
) -> bool:
    """Move ``pack`` to ``to`` with ``reason`` (history row and event included); False when it was
    already there. ``event`` overrides the event type (see :func:`event_type`).

    Raises:
        ValueError: the move is not in the state diagram (a bug in the caller).
    """
    src = pack.state
    if src == to:
        if pack.state_reason != reason:
            pack.state_reason = reason
        return False
    if not may_move(src, to):
        raise ValueError(f"pack {pack.cid}: no transition {src.value} -> {to.value}")
    now = utcnow()
    pack.state = to
    pack.state_reason = reason
    pack.updated_at = now
    session.add(
        PackStateChange(
            model_id=pack.model_id,
            pack_cid=pack.cid,
            from_state=src,
            to_state=to,
            reason=reason,
            actor=actor,
            at=now,
        )
    )
    await pack_event(session, pack, event or event_type(src, to), reason, actor, src)
    return True


async def pack_event(
    session: AsyncSession, pack: Pack, type: str, reason: str | None, actor: str | None, src: PackState | None
) -> None:
    """One ``pack.*`` event for ``pack``'s listing, in the caller's transaction."""
    await events.record(
        session,
        type,
        model=await events.model_name(session, pack.model_id),
        pack=pack.cid,
        actor=actor,
        payload={
            "from": src.value if src is not None else None,
            "state": pack.state.value,
            "reason": reason,
            "flagged": pack.flagged,
        },
    )


async def add_received(session: AsyncSession, pack: Pack, actor: str, reason: str | None) -> None:
    """Insert a new pack in ``received`` with the history row that starts its life."""
    pack.state = PackState.RECEIVED
    pack.state_reason = reason
    session.add(pack)
    await session.flush()
    session.add(
        PackStateChange(
            model_id=pack.model_id,
            pack_cid=pack.cid,
            from_state=None,
            to_state=PackState.RECEIVED,
            reason=RECEIVED_REASON,
            actor=actor,
            at=pack.created_at,
        )
    )
    await pack_event(session, pack, "pack.published", RECEIVED_REASON, actor, None)


async def make_available(
    session: AsyncSession,
    pack: Pack,
    *,
    actor: str,
    tags: Iterable[str] = (DEFAULT_TAG,),
    reason: str | None = None,
    jobs: JobQueue | None,
    on_moved: PointerMoved | None = None,
) -> dict[str, str]:
    """``received -> available``: move the publish's ``tags`` to the pack and queue its jobs, in ``session``.

    A tag set since the pack was published is left alone (a newer publish or a manual move wins).
    Returns the tags that moved.
    """
    await set_state(session, pack, PackState.AVAILABLE, AVAILABLE_REASON, actor)
    moved: dict[str, str] = {}
    for tag in tags:
        if await _moved_since(session, pack.model_id, tag, pack.created_at):
            continue
        await move_pointer(
            session,
            pack.model_id,
            tag,
            pack.cid,
            actor=actor,
            reason=reason or "published",
            on_moved=on_moved,
        )
        moved[tag] = pack.cid
    if jobs is not None:
        for kind in AVAILABLE_JOBS:
            await jobs.enqueue(kind, {"pack": pack.cid}, dedupe_key=kind.key(pack.cid), session=session)
    return moved


async def _moved_since(s: AsyncSession, model_id: int, tag: str, since: datetime) -> bool:
    at = (
        await s.execute(select(Pointer.updated_at).where(Pointer.model_id == model_id, Pointer.tag == tag))
    ).scalar_one_or_none()
    return at is not None and at > since


async def record_blob(
    sessions: async_sessionmaker[AsyncSession],
    cid: str,
    *,
    sha256_hex: str,
    size: int,
    unixfs_profile: str | None,
    uploaded_by: int | None,
) -> bool:
    """Record verified bytes in the store as a Blob row; False when a row already existed (or raced us).

    Either way ``uploaded_by`` (when given) is recorded as one of the blob's uploaders (``BlobUploader``).
    """
    try:
        async with sessions() as s, s.begin():
            if (await s.execute(select(Blob.cid).where(Blob.cid == cid))).scalar_one_or_none() is not None:
                if uploaded_by is not None and await s.get(BlobUploader, (cid, uploaded_by)) is None:
                    s.add(BlobUploader(cid=cid, publisher_id=uploaded_by))
                return False
            s.add(
                Blob(
                    cid=cid,
                    sha256=sha256_hex,
                    size=size,
                    unixfs_profile=unixfs_profile,
                    uploaded_by=uploaded_by,
                )
            )
            if uploaded_by is not None:
                s.add(BlobUploader(cid=cid, publisher_id=uploaded_by))
        return True
    except IntegrityError:  # a concurrent upload of the same bytes recorded it first
        if uploaded_by is not None:
            await _add_uploader(sessions, cid, uploaded_by)
        return False


async def _add_uploader(sessions: async_sessionmaker[AsyncSession], cid: str, publisher: int) -> None:
    """Records ``publisher`` as an uploader of the existing blob ``cid`` (nothing when no such blob)."""
    try:
        async with sessions() as s, s.begin():
            if await s.get(Blob, cid) is not None and await s.get(BlobUploader, (cid, publisher)) is None:
                s.add(BlobUploader(cid=cid, publisher_id=publisher))
    except IntegrityError:  # recorded concurrently
        pass


async def model_ref_of(s: AsyncSession, model_id: int) -> ModelRef:
    """The ``ns/model`` of a model row."""
    ns, model = (
        await s.execute(
            select(Namespace.name, Model.name)
            .join(Model, Model.namespace_id == Namespace.id)
            .where(Model.id == model_id)
        )
    ).one()
    return ModelRef(ns, model)
