"""The statements of a batch of pin adds, run on the raw driver in one transaction (registry.jobs.fastpath).

Built once and compiled once per dialect (registry.db.fastread.Query); the columns' own bind processors make
the rows what the ORM would write.
"""

from __future__ import annotations

from collections.abc import Generator
from functools import cache
from typing import Any, cast

from sqlalchemy import String, Table, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from pinner.states import ReplicaState
from registry.db.bulk import BulkInsert
from registry.db.fastread import Query
from registry.db.models import Replica
from registry.db.pins import Pin, PinUsage
from registry.jobs.fastpath import Step

PINS = cast(Table, Pin.__table__)
# every column a new pin's row sets (PinService._values)
PIN_VALUES = (
    "requestid",
    "publisher_id",
    "cid",
    "cid_key",
    "name",
    "origins",
    "meta",
    "status",
    "info",
    "replication_min",
    "replication_max",
    "replaces",
    "created",
    "updated_at",
)

USAGE = Query(
    select(PinUsage.pins, PinUsage.bytes).where(
        PinUsage.publisher_id == bindparam("publisher_id", type_=PinUsage.publisher_id.type)
    )
)
INSERT_PINS = BulkInsert(PINS, PIN_VALUES)
_PINNED = (Replica.cid, Replica.node_id)
HOLDERS_OF_ONE = Query(
    select(*_PINNED).where(
        Replica.cid == bindparam("cid", type_=String()), Replica.state == ReplicaState.PINNED
    )
)


def usage(publisher_id: int) -> Generator[Step, Any, tuple[int, int]]:
    """(pins held, their bytes) of the publisher (kept by triggers: one row)."""
    rows = yield USAGE, {"publisher_id": publisher_id}
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def insert(
    rows: list[dict[str, Any]], jobs: BulkInsert, job_rows: list[dict[str, Any]], dialect: str
) -> Generator[Step, Any, dict[str, set[int]]]:
    """Insert the pins' rows and their jobs; the holders of their CIDs.

    On Postgres one statement does it all (two data-modifying CTEs beside the holders' SELECT: atomic on its
    own, one round trip); elsewhere three steps of the plan's transaction.
    """
    keys = sorted({v["cid_key"] for v in rows})
    if dialect != "postgresql":
        yield INSERT_PINS.step(rows, dialect)
        yield jobs.step(job_rows, dialect)
        return (yield from holders(keys))
    found = yield (
        _all_in_one(jobs),
        {
            **INSERT_PINS.params(rows, dialect),  # type: ignore[dict-item]
            **jobs.params(job_rows, dialect),  # type: ignore[dict-item]
            "cids": keys,
        },
    )
    return _by_cid(found)


@cache
def _all_in_one(jobs: BulkInsert) -> Query:
    pins = INSERT_PINS.statement("postgresql").cte("new_pins")
    queued = jobs.statement("postgresql").cte("new_jobs")
    return Query(
        select(*_PINNED)
        .where(
            Replica.cid == any_(bindparam("cids", type_=ARRAY(String()))),
            Replica.state == ReplicaState.PINNED,
        )
        .add_cte(pins, queued)
    )


def _by_cid(found: list[tuple[str, int]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for cid, nid in found:
        out.setdefault(cid, set()).add(nid)
    return out


def holders(keys: list[str]) -> Generator[Step, Any, dict[str, set[int]]]:
    """CID key -> the nodes that pin it (each an index lookup: in SQLite's runner thread, cheaper than building
    an IN list per batch size)."""
    found = []
    for key in keys:
        found += yield HOLDERS_OF_ONE, {"cid": key}
    return _by_cid(found)
