"""Finding a pack listing by CID: the one listing, the one of a given model, or 409 when several models list it.

A pack's content (``manifests``) is shared by its listings (``packs``, one per model that published the CID).
Routes and services that take a bare CID find the listing here: with one listing the CID is enough; with
several the caller names the model (``?model=ns/name`` on the API), else ``AmbiguousPack`` names them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.models import Model, Namespace, Pack
from registry.db.naming import model_named, namespace_named
from registry.errors import AmbiguousPack, NotFound
from registry.names import ModelRef

NAMED_MODELS = 10  # models an ambiguity error names (the rest are counted)

ModelSelector = ModelRef | int | None  # a model by name, by id, or None: the CID's only listing


async def listing_models(session: AsyncSession, cid: str, limit: int = NAMED_MODELS + 1) -> list[str]:
    """``ns/name`` of the models that list ``cid``, oldest listing first (at most ``limit``)."""
    rows = await session.execute(
        select(Namespace.name, Model.name)
        .join(Model, Model.namespace_id == Namespace.id)
        .join(Pack, Pack.model_id == Model.id)
        .where(Pack.cid == cid)
        .order_by(Pack.id)
        .limit(limit)
    )
    return [f"{ns}/{name}" for ns, name in rows]


async def listings_of(session: AsyncSession, cid: str, *, for_update: bool = False) -> list[Pack]:
    """Every listing of ``cid`` (oldest first); empty when the CID is not published."""
    q = select(Pack).where(Pack.cid == cid).order_by(Pack.id)
    if for_update:
        q = q.with_for_update(of=Pack)
    return list((await session.execute(q)).scalars().unique())


async def listing_in(session: AsyncSession, model_id: int, cid: str) -> Pack | None:
    """The listing of ``cid`` under the model (a pointer's target, a history entry); None when there is none."""
    q = select(Pack).where(Pack.model_id == model_id, Pack.cid == cid)
    return (await session.execute(q)).scalar_one_or_none()


async def find_listing(
    session: AsyncSession, cid: str, model: ModelSelector = None, *, for_update: bool = False
) -> Pack:
    """The listing of ``cid`` under ``model`` (or its only listing when ``model`` is None).

    Raises:
        NotFound: no such listing.
        AmbiguousPack: ``model`` is None and several models list ``cid``.
    """
    q = select(Pack).where(Pack.cid == cid)
    if isinstance(model, int):
        q = q.where(Pack.model_id == model)
    elif model is not None:
        mid = select(Model.id).join(Namespace, Namespace.id == Model.namespace_id)
        mid = mid.where(namespace_named(model.namespace), model_named(model.model))
        q = q.where(Pack.model_id == mid.scalar_subquery())
    if for_update:
        q = q.with_for_update(of=Pack)
    rows = list((await session.execute(q.order_by(Pack.id).limit(2))).scalars().unique())
    if not rows:
        if model is None or isinstance(model, int):
            raise NotFound(f"no pack {cid}", cid=cid)
        raise NotFound(f"no pack {cid} in model {model}", cid=cid, model=str(model))
    if len(rows) > 1:
        names = await listing_models(session, cid)
        shown = ", ".join(names[:NAMED_MODELS]) + (" and more" if len(names) > NAMED_MODELS else "")
        raise AmbiguousPack(
            f"pack {cid} is listed under several models ({shown}); choose one with ?model=ns/name",
            cid=cid,
            models=names[:NAMED_MODELS],
        )
    return rows[0]
