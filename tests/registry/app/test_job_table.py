"""The job table: every job kind has its handler once the daemon runs, and every schedule names a kind."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.api.keys import WORKER
from registry.app import jobs
from registry.app.daemon import build_app
from registry.jobs.kinds import JobKind
from registry.settings import Settings


async def test_the_running_worker_handles_every_job_kind(settings: Settings) -> None:
    app = build_app(settings)
    async with TestClient(TestServer(app)):
        assert set(app[WORKER].kinds) == set(JobKind)


def test_every_schedule_is_a_job_kind_with_the_settings_interval() -> None:
    s = Settings(replication={"reconcile_interval_s": 11.0}, curation={"sweep_interval_s": 7.0})
    table = {x.kind: x.interval_s for x in jobs.schedules(s)}
    assert set(table) <= set(JobKind)
    assert table[JobKind.RECONCILE] == 11.0 and table[JobKind.CURATE_SWEEP] == 7.0
    assert table[JobKind.IPNS_REPUBLISH] == s.ipns.republish_interval_s


def test_dedupe_key_of_a_kind() -> None:
    assert JobKind.REPLICATE.key("bafy") == "replicate:bafy"
    assert JobKind.RECONCILE.key() == "reconcile"


@pytest.mark.parametrize("access_log", [True, False])
async def test_access_log_setting(
    settings: Settings, access_log: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"access_log": access_log})}
    )
    app = build_app(settings)
    with caplog.at_level(logging.INFO):
        async with TestClient(TestServer(app)) as c:
            assert (await c.get("/healthz")).status == 200
    lines = [r for r in caplog.records if r.name == "modelpack.access" and "/healthz" in r.getMessage()]
    assert bool(lines) is access_log
