"""``GET /v1/tokens`` and ``GET /v1/keys`` page in SQL (LIMIT in the query, keyset cursor), never by reading
every row and slicing in Python."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from registry.api.keys import ENGINE, SESSIONS
from registry.db.models import Publisher, SigningKey
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry


@contextmanager
def _statements(reg: Registry) -> Iterator[list[str]]:
    seen: list[str] = []
    engine = reg.client.app[ENGINE].sync_engine

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _all_pages(reg: Registry, path: str, tok: str | None, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        q = f"{path}?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = await reg.client.get(q, headers=helpers.bearer(tok) if tok else {})
        assert r.status == 200, await r.text()
        body = await r.json()
        pages.append([str(t.get("id", t.get("key_id"))) for t in body["items"]])
        cursor = body.get("next_cursor")
        if not cursor:
            return pages


async def test_tokens_come_in_pages_limited_in_sql(reg: Registry) -> None:
    for i in range(5):
        r = await reg.client.post(
            "/v1/tokens",
            json={"publisher": f"p{i}", "namespaces": ["acme"]},
            headers=helpers.bearer(reg.admin),
        )
        assert r.status == 201
    whole = (await (await reg.client.get("/v1/tokens", headers=helpers.bearer(reg.admin))).json())["items"]
    assert len(whole) == 7
    with _statements(reg) as seen:
        pages = await _all_pages(reg, "/v1/tokens", reg.admin, 3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == [str(t["id"]) for t in whole]
    assert any("api_tokens" in s and "LIMIT" in s.upper() for s in seen)
    r = await reg.client.get("/v1/tokens?cursor=bogus", headers=helpers.bearer(reg.admin))
    assert r.status == 400


async def test_keys_come_in_pages_limited_in_sql(reg: Registry) -> None:
    async with reg.client.app[SESSIONS]() as s, s.begin():
        pid = (await s.execute(Publisher.__table__.select().where(Publisher.name == "alice"))).first()[0]
        for i in range(5):
            s.add(SigningKey(key_id=f"ed25519:{i:064x}", publisher_id=pid, public_key=bytes(32)))
    with _statements(reg) as seen:
        pages = await _all_pages(reg, "/v1/keys", None, 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [i for p in pages for i in p]
    assert flat == sorted(flat) and len(set(flat)) == 5
    key_selects = [s for s in seen if "signing_keys" in s and "SELECT" in s.upper()]
    assert key_selects and all("LIMIT" in s.upper() for s in key_selects)
