"""Startup guards on the data dir: one daemon per folder (flock on repo.lock, the second names the holder's
PID), and a missing KEK file is never silently regenerated while sealed rows need the old one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pinner.states import NodeKind, NodeState
from registry.api.keys import SESSIONS
from registry.app.daemon import build_app
from registry.db.models import IpfsNode
from registry.errors import ConfigError
from registry.ipns.channels import KEK_FILE
from registry.settings import Settings


def _quiet(settings: Settings) -> Settings:
    return settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})


async def test_a_second_daemon_on_the_same_data_dir_refuses_naming_the_holder(settings: Settings) -> None:
    settings = _quiet(settings)
    async with TestClient(TestServer(build_app(settings))) as first:
        assert (await first.get("/readyz")).status == 200
        with pytest.raises(ConfigError, match=rf"in use by another modelpack daemon \(PID {os.getpid()}\)"):
            async with TestClient(TestServer(build_app(settings))):
                pass
        assert (await first.get("/readyz")).status == 200
    async with TestClient(TestServer(build_app(settings))) as again:  # released on stop
        assert (await again.get("/readyz")).status == 200


def test_a_lock_held_by_another_process_names_its_pid(settings: Settings) -> None:
    data = settings.storage.data_dir
    data.mkdir(parents=True, exist_ok=True)
    code = (
        "import sys, time; from pathlib import Path; from registry.app.datalock import data_dir_lock\n"
        "with data_dir_lock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        from registry.app.datalock import data_dir_lock

        with pytest.raises(ConfigError, match=rf"PID {holder.pid}\)"), data_dir_lock(data):
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    with data_dir_lock(data):  # the kernel dropped the lock with its holder
        pass


async def test_a_missing_kek_with_sealed_rows_refuses_to_start(settings: Settings) -> None:
    settings = _quiet(settings)
    app = build_app(settings)
    async with TestClient(TestServer(app)), app[SESSIONS]() as s, s.begin():
        s.add(
            IpfsNode(
                name="n1",
                kind=NodeKind.KUBO,
                url="http://127.0.0.1:5001",
                auth=b"sealed",
                tags={},
                state=NodeState.UNKNOWN,
                draining=False,
            )
        )
    kek = settings.storage.data_dir / KEK_FILE
    kek.unlink()
    with pytest.raises(ConfigError, match=r"ipns.kek is missing.*1 node credential"):
        async with TestClient(TestServer(build_app(settings))):
            pass
    assert not kek.exists()
