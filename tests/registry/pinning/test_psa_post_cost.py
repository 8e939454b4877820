"""POST /pins does its work in one raw-driver transaction (the token check cached), and reads nothing back it
wrote; the holders it reports are read in that transaction (SQLite and Postgres)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pinner.states import NodeKind, NodeState, ReplicaState
from registry.api.keys import ENGINE, SESSIONS
from registry.api.psa import PSA
from registry.db.models import IpfsNode, Publisher, Replica
from registry.pinning.requests import parse_pin
from tests.registry.pinning.conftest import Psa, raw_cid


@contextmanager
def recorded(engine: AsyncEngine) -> Iterator[tuple[list[str], list[int]]]:
    """(the SQL statements run, one entry per transaction begun) while the block runs."""
    statements: list[str] = []
    begins: list[int] = []

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()).upper())

    def on_begin(_conn: Any) -> None:
        begins.append(1)

    target = engine.sync_engine
    event.listen(target, "before_cursor_execute", on_statement)
    event.listen(target, "begin", on_begin)
    try:
        yield statements, begins
    finally:
        event.remove(target, "before_cursor_execute", on_statement)
        event.remove(target, "begin", on_begin)


class RecordingRunner:
    """Wraps a raw-driver runner: the statements of each plan it runs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.plans: list[list[str]] = []

    async def plan(self, plan: Generator[Any, Any, Any], atomic: bool = True) -> Any:
        steps: list[str] = []
        self.plans.append(steps)

        def watched() -> Generator[Any, Any, Any]:
            result = None
            while True:
                try:
                    step = plan.send(result)
                except StopIteration as done:
                    return done.value
                steps.append(" ".join(str(step[0].stmt).split()).upper())
                result = yield step

        return await self.inner.plan(watched(), atomic=atomic)


async def test_post_pins_is_the_token_check_and_one_transaction(
    psa: Psa, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def post(data: bytes) -> None:
        r = await psa.client.post("/psa/pins", json={"cid": raw_cid(data)}, headers=psa.h(psa.alice))
        assert r.status == 202, await r.text()

    pins = psa.client.app[PSA].pins
    runner = RecordingRunner(pins._runner)
    monkeypatch.setattr(pins, "_runner", runner)
    await post(b"warm")  # the node addresses are asked once, then cached
    runner.plans.clear()
    with recorded(psa.client.app[ENGINE]) as (statements, begins):
        await post(b"measured")
    # the token was checked on the first POST and is cached (server.token_cache_ttl_s): nothing through
    # SQLAlchemy, and one transaction on the raw driver: quota + insert + job + holders together
    assert statements == [] and begins == []
    assert len(runner.plans) == 1, runner.plans
    (steps,) = runner.plans
    assert "FROM PIN_USAGE" in steps[0]  # the quota: one row, not a count of the pins
    if psa.client.app[ENGINE].dialect.name == "postgresql":  # the writes and the holders: one statement
        assert [s.split()[0] for s in steps] == ["SELECT", "WITH"], steps
        assert "INSERT INTO PINS" in steps[1] and "INSERT INTO JOBS" in steps[1]
    else:
        assert [s.split()[0] for s in steps] == ["SELECT", "INSERT", "INSERT", "SELECT"], steps
        assert steps[1].startswith("INSERT INTO PINS") and steps[2].startswith("INSERT INTO JOBS")
    assert "FROM REPLICAS" in steps[-1]  # nothing read back of what was written


async def test_add_and_replace_report_the_nodes_already_holding_the_cid(psa: Psa) -> None:
    app = psa.client.app
    pins = app[PSA].pins
    held, fresh = raw_cid(b"held"), raw_cid(b"fresh")
    async with app[SESSIONS]() as s, s.begin():
        node = IpfsNode(name="n1", kind=NodeKind.KUBO, url="http://127.0.0.1:1", state=NodeState.UP)
        s.add(node)
        await s.flush()
        s.add(Replica(cid=held, node_id=node.id, state=ReplicaState.PINNED))
        alice = (await s.execute(select(Publisher.id).where(Publisher.name == "alice"))).scalar_one()
    first = await pins.add(alice, parse_pin({"cid": held}, pins.config))
    assert first.holders == frozenset({node.id})
    second = await pins.add(alice, parse_pin({"cid": fresh}, pins.config))
    assert second.holders == frozenset()
    moved = await pins.replace(alice, second.requestid, parse_pin({"cid": held}, pins.config))
    assert moved.holders == frozenset({node.id}) and moved.cid_key == held
    assert (await pins.get(alice, moved.requestid)).requestid == moved.requestid
