"""The curation sweep's queries carry a constant number of bind parameters, however many models are curated
(``NOT IN (every curated target)`` passed the drivers' ~32k limit on large registries), and every curated
target is checked once however many pages of pointers the sweep reads."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.models import Model, Namespace, Pack, PackState, Pointer
from registry.gate import curation as curation_module
from registry.gate.config import GateConfig
from registry.gate.curation import CurationOutcome, CurationService
from registry.gate.rule import Fact

MODELS = 150


async def _fine(session: AsyncSession, pack_cid: str, model_id: int) -> Fact:
    return Fact(True, ())


@pytest.mark.parametrize("page", [None, 7])  # 7: the curated pointers are read in many pages
async def test_sweep_binds_do_not_grow_with_the_curated_models(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch, page: int | None
) -> None:
    if page is not None:
        monkeypatch.setattr(curation_module, "SWEEP_PAGE", page)
    async with sessions() as s, s.begin():
        ns = Namespace(name="acme")
        s.add(ns)
        await s.flush()
        models = [Model(namespace_id=ns.id, name=f"m{i}") for i in range(MODELS)]
        s.add_all(models)
        await s.flush()
        for i, m in enumerate(models):
            for suffix in ("target", "older"):
                s.add(
                    Pack(
                        cid=f"{suffix}{i}",
                        model_id=m.id,
                        model_version=f"{suffix}{i}",
                        manifest=b"{}",
                        state=PackState.CURATED,
                        total_size=1,
                        shard_count=1,
                    )
                )
        await s.flush()
        s.add_all(Pointer(model_id=m.id, tag="curated", pack_cid=f"target{i}") for i, m in enumerate(models))

    curation = CurationService(sessions, GateConfig(), _fine, _fine)
    checked: list[str] = []

    async def check_curated(cid: str, model: object = None) -> CurationOutcome:
        checked.append(cid)
        return CurationOutcome(cid, "curated")

    curation.check_curated = check_curated  # type: ignore[method-assign]
    binds: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        binds.append(len(parameters or ()))

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await curation.sweep()
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert binds and max(binds) < 10, binds
    targets = {f"target{i}" for i in range(MODELS)}
    assert targets <= set(checked) and len(checked) == len(set(checked))  # no target re-checked as "other"
    others = set(checked) - targets
    assert others and all(c.startswith("older") for c in others)
    assert len(others) == min(GateConfig().sweep_batch, MODELS)
