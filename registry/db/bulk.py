"""Many rows in one INSERT on the raw driver: on Postgres one array per column, unnested (one Bind message, one
statement, however many rows); elsewhere an executemany of the row statement (SQLite runs it in-process).

asyncpg's executemany sends a Bind/Execute pair per row and, through asyncio's transport, a write per chunk;
on a busy machine those sends cost more than the rows. The column arrays go through the columns' own bind
processors (registry.db.fastread), so the rows are what the ORM would write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Table, Text, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from registry.db.fastread import Query

Params = dict[str, Any] | list[dict[str, Any]]


class BulkInsert:
    """``INSERT INTO table (names) ...`` of many rows; ``conflict`` finishes the dialect's insert (e.g. ``ON
    CONFLICT DO NOTHING``)."""

    def __init__(
        self, table: Table, names: Sequence[str], conflict: Callable[[Any], Any] | None = None
    ) -> None:
        self.table, self.names = table, tuple(names)
        self._conflict = conflict or (lambda ins: ins)
        self._by_dialect: dict[str, Query] = {}
        self._json = frozenset(n for n in self.names if isinstance(table.c[n].type, JSON))

    def _param(self, name: str) -> str:
        """A column's array parameter on Postgres: named after its table too, so that several bulk inserts can
        share one statement (registry.pinning.adds)."""
        return f"{self.table.name}__{name}"

    def statement(self, dialect: str) -> Any:
        """The INSERT for ``dialect`` (SQLAlchemy Core), to run through :meth:`step` or to nest in a CTE."""
        c = self.table.c
        if dialect == "postgresql":
            arrays = [
                # a JSON value that is a list would read as one more dimension of the array: sent as text
                cast(func.unnest(bindparam(self._param(n), type_=ARRAY(Text()))), c[n].type)
                if n in self._json
                else func.unnest(bindparam(self._param(n), type_=ARRAY(c[n].type)))
                for n in self.names
            ]
            ins: Any = pg_insert(self.table).from_select(list(self.names), select(*arrays))
        else:
            ins = sqlite_insert(self.table).values({n: bindparam(n, type_=c[n].type) for n in self.names})
        return self._conflict(ins)

    def params(self, rows: Sequence[dict[str, Any]], dialect: str) -> Params:
        """The parameters of :meth:`statement` for ``rows`` (each a dict with every one of ``names``)."""
        if dialect == "postgresql":  # several set-returning functions in one SELECT list run in lockstep
            return {
                self._param(n): [None if r[n] is None else json.dumps(r[n]) for r in rows]
                if n in self._json
                else [r[n] for r in rows]
                for n in self.names
            }
        return list(rows)

    def step(self, rows: Sequence[dict[str, Any]], dialect: str) -> tuple[Query, Params]:
        """The statement and its parameters for ``rows``."""
        q = self._by_dialect.get(dialect)
        if q is None:
            q = self._by_dialect[dialect] = Query(self.statement(dialect))
        return q, self.params(rows, dialect)
