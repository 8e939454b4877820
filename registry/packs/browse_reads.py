"""The browse hot paths on the raw driver (registry.db.fastread): the pack detail and the model list.

Every statement is built and compiled once; the pack detail's reads share one read transaction, so what it shows
(state, history, replicas, pointers) is one consistent moment of the index.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, and_, any_, bindparam, case, func, literal, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY

from registry.db.base import BytewiseLower
from registry.db.fastread import AnySelect, FastReads, Query, Row, Snapshot
from registry.db.models import (
    Manifest,
    Model,
    Namespace,
    Pack,
    PackStateChange,
    Pointer,
    Replica,
    Shard,
    Signature,
    ValidationReport,
)
from registry.db.naming import model_key_is, namespace_key_is
from registry.names import name_key

DETAIL_HISTORY = 50  # state changes inlined in the pack detail (the newest); the rest page via state_history


def _listing(*where: Any, many: bool = False) -> Query:
    """A listing with its names (0 id, 1 cid, 2 model_id, 3 version, 4 state, 5 reason, 6 created, 7 ns,
    8 model, 9 total_size, 10 shard_count); at most two rows, oldest first (``many``: every listing of the
    array ``cids``). The manifest's bytes are not read here: they never change under their CID, so the caller
    reads them once (:data:`CONTENT`) and keeps them."""
    cid_is = any_(bindparam("cids", type_=ARRAY(String))) if many else bindparam("cid")
    stmt = (
        select(
            Pack.id,
            Pack.cid,
            Pack.model_id,
            Pack.model_version,
            Pack.state,
            Pack.state_reason,
            Pack.created_at,
            Namespace.name,
            Model.name,
            Manifest.total_size,
            Manifest.shard_count,
        )
        .join(Manifest, Manifest.cid == Pack.cid)
        .join(Model, Model.id == Pack.model_id)
        .join(Namespace, Namespace.id == Model.namespace_id)
        .where(Pack.cid == cid_is, *where)
        .order_by(Pack.id)
    )
    return Query(stmt if many else stmt.limit(2))


LISTING = _listing()
LISTING_OF_ID = _listing(Pack.model_id == bindparam("model_id"))
LISTING_OF_NAME = _listing(namespace_key_is("ns"), model_key_is("model"))

CONTENT = Query(select(Manifest.manifest).where(Manifest.cid == bindparam("cid")))
_HISTORY_COLS = (
    PackStateChange.id,
    PackStateChange.from_state,
    PackStateChange.to_state,
    PackStateChange.reason,
    PackStateChange.actor,
    PackStateChange.at,
)
_SHARD_COLS = (
    Shard.position,
    Shard.filename,
    Shard.cid,
    Shard.sha256,
    Shard.size,
    Shard.unixfs_profile,
    Shard.role,
)
_SIGNATURE_COLS = (
    Signature.key_id,
    Signature.kind,
    Signature.verdict,
    Signature.verdict_reason,
    Signature.received_at,
)
_VALIDATION_COLS = (
    ValidationReport.verdict,
    ValidationReport.reason,
    ValidationReport.started_at,
    ValidationReport.finished_at,
)


def _parts(cid: Any, model_id: Any) -> dict[str, AnySelect]:
    """The detail's other reads, of the content ``cid`` and the listing's ``model_id`` (bound parameters, or the
    listing's own columns inside one statement); each keyed by the name :func:`pack_detail_rows` returns."""
    return {
        "history": select(*_HISTORY_COLS)
        .where(PackStateChange.pack_cid == cid, PackStateChange.model_id == model_id)
        .order_by(PackStateChange.id.desc())
        .limit(DETAIL_HISTORY + 1),
        "signatures": select(*_SIGNATURE_COLS).where(Signature.pack_cid == cid).order_by(Signature.id),
        "replicas": select(Replica.state, func.count())
        .where(
            or_(
                Replica.cid == cid,
                Replica.cid.in_(
                    # two levels down: say what correlates (the listing, inside one statement)
                    select(Shard.cid).where(Shard.pack_cid == cid).correlate_except(Shard).scalar_subquery()
                ),
            )
        )
        .group_by(Replica.state),
        "validation": select(*_VALIDATION_COLS)
        .where(ValidationReport.pack_cid == cid)
        .order_by(ValidationReport.started_at.desc(), ValidationReport.id.desc())
        .limit(1),
        "tags": select(Pointer.tag)
        .where(Pointer.model_id == model_id, Pointer.pack_cid == cid)
        .order_by(Pointer.tag),
    }


PARTS = {k: Query(v) for k, v in _parts(bindparam("cid"), bindparam("model_id")).items()}
SHARDS = Query(select(*_SHARD_COLS).where(Shard.pack_cid == bindparam("cid")).order_by(Shard.position))
HISTORY = PARTS["history"]


def _in_one(where: Any, *, content: bool, many: bool = False) -> Query:
    """Postgres: the listing and every part in one statement (one round trip, one snapshot). Each part is an
    array of anonymous records, which asyncpg decodes into tuples of typed values."""
    parts = _parts(Pack.cid, Pack.model_id)
    if content:
        parts["shards"] = select(*_SHARD_COLS).where(Shard.pack_cid == Pack.cid).order_by(Shard.position)
    listing = _listing(*where, many=many).stmt
    arrays = [
        func.array(part.with_only_columns(func.row(*part.selected_columns)).scalar_subquery()).label(k)
        for k, part in parts.items()
    ]
    return Query(listing.add_columns(*arrays, *([Manifest.manifest] if content else [])))


# (where, content) -> the Postgres statement; the Queries per part process the arrays' rows
_ONE: dict[tuple[str, bool], Query] = {}
_WHERE = {
    "any": (),
    "id": (Pack.model_id == bindparam("model_id"),),
    "name": (namespace_key_is("ns"), model_key_is("model")),
}
_AS_QUERY = {**PARTS, "shards": SHARDS}
_LISTING_WIDTH = 11


async def _in_one_statement(
    reads: FastReads, cid: str, model: object, *, content: bool
) -> tuple[list[Row], dict[str, list[Row]]]:
    params: dict[str, Any]
    if model is None:
        key, params = "any", {"cid": cid}
    elif isinstance(model, int):
        key, params = "id", {"cid": cid, "model_id": model}
    else:
        ref: Any = model
        key, params = "name", {"cid": cid, "ns": name_key(ref.namespace), "model": name_key(ref.model)}
    q = _ONE.get((key, content))
    if q is None:
        q = _ONE[(key, content)] = _in_one(_WHERE[key], content=content)
    rows = await reads.all(q, **params)
    if len(rows) != 1:
        return [r[:_LISTING_WIDTH] for r in rows], {}
    return [rows[0][:_LISTING_WIDTH]], _split(reads, rows[0], content=content)


def _split(reads: FastReads, row: Row, *, content: bool) -> dict[str, list[Row]]:
    """The parts of a row of :func:`_in_one`, each array's records processed as its own query's rows."""
    parts: dict[str, list[Row]] = {}
    for i, name in enumerate([*PARTS, *(["shards"] if content else [])]):
        proc = _AS_QUERY[name].compiled(reads.dialect)
        parts[name] = [proc.row(r) for r in row[_LISTING_WIDTH + i]]
    if content:
        parts["manifest"] = [(row[-1],)]
    return parts


_MANY = {content: _in_one((), content=content, many=True) for content in (False, True)}


async def pack_details_many(
    reads: FastReads, cids: list[str], *, content: bool
) -> dict[str, tuple[Row, dict[str, list[Row]]] | None]:
    """Postgres: the details of several packs in one statement (the batched pack detail), as
    :func:`pack_detail_rows` gives one; None for a CID without exactly one listing (the caller reads it alone)."""
    by_cid: dict[str, list[Row]] = {}
    for row in await reads.all(_MANY[content], cids=cids):
        by_cid.setdefault(row[1], []).append(row)
    out: dict[str, tuple[Row, dict[str, list[Row]]] | None] = dict.fromkeys(cids)
    for cid, rows in by_cid.items():
        if len(rows) == 1:
            out[cid] = (rows[0][:_LISTING_WIDTH], _split(reads, rows[0], content=content))
    return out


async def _listings(s: Snapshot, cid: str, model: object) -> list[Row]:
    if model is None:
        return await s.all(LISTING, cid=cid)
    if isinstance(model, int):
        return await s.all(LISTING_OF_ID, cid=cid, model_id=model)
    ref: Any = model  # a ModelRef
    return await s.all(LISTING_OF_NAME, cid=cid, ns=name_key(ref.namespace), model=name_key(ref.model))


async def pack_detail_rows(
    reads: FastReads, cid: str, model: object, *, content: bool
) -> tuple[list[Row], dict[str, list[Row]]]:
    """The listings of ``cid`` (at most two; of ``model`` when given) and, when there is exactly one, the
    rest of its detail, all from one state of the index; with ``content``, also the manifest's bytes and the
    shard rows (which depend on the CID alone). Postgres: one statement; SQLite: one read transaction."""
    if reads.dialect.name == "postgresql":
        return await _in_one_statement(reads, cid, model, content=content)
    async with reads.snapshot() as s:
        rows = await _listings(s, cid, model)
        if len(rows) != 1:
            return rows, {}
        model_id = rows[0][2]
        more = (
            {"manifest": await s.all(CONTENT, cid=cid), "shards": await s.all(SHARDS, cid=cid)}
            if content
            else {}
        )
        return rows, {**more, **{k: await s.all(q, cid=cid, model_id=model_id) for k, q in PARTS.items()}}


# ---------------------------------------------------------------------------------------------- model list

_MODELS: dict[tuple[bool, bool], Query] = {}


def prefix_end(lo: str) -> str:
    """The least string above every string that starts with ``lo`` (ASCII: names are), in byte order."""
    return lo[:-1] + chr(ord(lo[-1]) + 1)


def models_query(*, namespace: bool, after: bool) -> Query:
    """The model list by name prefix, with the other filters in use (four variants, each compiled once)."""
    key = (namespace, after)
    q = _MODELS.get(key)
    if q is None:
        stmt: AnySelect = select(Namespace.name, Model.name, Model.created_at).join(
            Namespace, Namespace.id == Model.namespace_id
        )
        if namespace:
            stmt = stmt.where(namespace_key_is("ns"))
        # case-blind; the bound pattern is escaped by the caller. The range [lo, hi) of the bytewise key holds
        # every name with the prefix: an index range scan (migration 0011) instead of a scan of every model.
        name_bytes = BytewiseLower(Model.name)
        stmt = stmt.where(
            name_bytes >= bindparam("lo", type_=String()),
            name_bytes < bindparam("hi", type_=String()),
            func.lower(Model.name).like(bindparam("pattern"), escape="\\"),
        )
        if after:
            stmt = stmt.where(
                or_(
                    Namespace.name > bindparam("after_ns"),
                    and_(Namespace.name == bindparam("after_ns"), Model.name > bindparam("after_name")),
                )
            )
        q = _MODELS[key] = Query(stmt.order_by(Namespace.name, Model.name).limit(bindparam("limit")))
    return q


# Without a prefix the list walks namespaces in name order and each one's models through the unique index
# (namespace_id, name), so a page costs a few index range scans however many models there are; a join
# ordered by both names would sort every model of the namespaces it spans (Postgres cannot keep the inner
# order across a nested loop).
_HAS_MODELS = select(Model.id).where(Model.namespace_id == Namespace.id).exists()
_NAMESPACES_FROM = Query(
    select(Namespace.id, Namespace.name)
    .where(Namespace.name >= bindparam("from_ns"), _HAS_MODELS)
    .order_by(Namespace.name)
    .limit(bindparam("limit"))
)
_NAMESPACES_AFTER = Query(
    select(Namespace.id, Namespace.name)
    .where(Namespace.name > bindparam("from_ns"), _HAS_MODELS)
    .order_by(Namespace.name)
    .limit(bindparam("limit"))
)
_NAMESPACE_NAMED = Query(select(Namespace.id, Namespace.name).where(namespace_key_is("ns")))
_MODELS_IN = Query(
    select(Model.name, Model.created_at)
    .where(Model.namespace_id == bindparam("ns_id"), Model.name > bindparam("after_name"))
    .order_by(Model.name)
    .limit(bindparam("limit"))
)


def _walk_in_one(*, named: bool) -> Query:
    """Postgres: the walk below as one statement. The namespaces (``limit`` + 1 of them: each has a model, and
    only the first can have none left after ``after``) each give their first ``limit`` models (LATERAL, through
    the unique index); the rows come out presorted by namespace, so the final order is an incremental sort."""
    ns_where = (namespace_key_is("ns"),) if named else (_HAS_MODELS,)
    spaces = (
        select(Namespace.id, Namespace.name)
        .where(Namespace.name >= bindparam("from_ns"), *ns_where)
        .order_by(Namespace.name)
        .limit(bindparam("spaces"))
        .subquery("sp")
    )
    first = spaces.c.name == bindparam("from_ns")
    models = (
        select(Model.name, Model.created_at)
        .where(
            Model.namespace_id == spaces.c.id,
            Model.name > case((first, bindparam("after_name", type_=String())), else_=literal("")),
        )
        .order_by(Model.name)
        .limit(bindparam("limit"))
        .lateral("m")
    )
    stmt = (
        select(spaces.c.name, models.c.name, models.c.created_at)
        .select_from(spaces.join(models, true()))
        .order_by(spaces.c.name, models.c.name)
        .limit(bindparam("limit"))
    )
    return Query(stmt)


_WALK_IN_ONE = {named: _walk_in_one(named=named) for named in (False, True)}


async def walk_models(
    reads: FastReads, *, namespace: str | None, after: tuple[str, str] | None, limit: int
) -> list[tuple[str, str, Any]]:
    """(namespace, model, created_at) of the first ``limit`` models after ``after``, in name order. Postgres:
    one statement (one round trip); SQLite: a few indexed reads in one read transaction."""
    if reads.dialect.name == "postgresql":
        params: dict[str, Any] = {
            "from_ns": after[0] if after else "",
            "after_name": after[1] if after else "",
            "spaces": limit + 1,
            "limit": limit,
        }
        if namespace is not None:
            params["ns"] = name_key(namespace)
        rows = await reads.all(_WALK_IN_ONE[namespace is not None], **params)
        return [(ns, name, at) for ns, name, at in rows]
    out: list[tuple[str, str, Any]] = []
    async with reads.snapshot() as s:
        if namespace is not None:
            spaces = await s.all(_NAMESPACE_NAMED, ns=name_key(namespace))
            if after is not None:
                spaces = [sp for sp in spaces if sp[1] >= after[0]]
        else:
            spaces = await s.all(_NAMESPACES_FROM, from_ns=after[0] if after else "", limit=limit)
        while spaces:
            for ns_id, ns_name in spaces:
                first = after is not None and ns_name == after[0]
                rows = await s.all(
                    _MODELS_IN,
                    ns_id=ns_id,
                    after_name=after[1] if first and after else "",
                    limit=limit - len(out),
                )
                out.extend((ns_name, name, at) for name, at in rows)
                if len(out) >= limit:
                    return out
            if namespace is not None or len(spaces) < limit:
                return out
            spaces = await s.all(_NAMESPACES_AFTER, from_ns=spaces[-1][1], limit=limit)
    return out
