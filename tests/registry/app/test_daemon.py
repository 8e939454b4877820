"""The daemon skeleton: probes, JSON errors, body limits, refusing a bad database, CLI failures, SIGTERM."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from registry.api.keys import JOB_QUEUE
from registry.app.daemon import build_app
from registry.errors import DatabaseNotReady
from registry.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[3]
MODELPACK = [sys.executable, "-m", "registry"]


@pytest.fixture
async def client(settings: Settings):  # type: ignore[no-untyped-def]
    app = build_app(settings)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_health_and_readiness(client: TestClient) -> None:
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json())["status"] == "ok"
    r = await client.get("/readyz")
    body = await r.json()
    assert r.status == 200 and body["status"] == "ready" and body["migration"]


async def test_unknown_route_and_method_are_json_errors(client: TestClient) -> None:
    r = await client.get("/no/such/thing")
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "not_found"
    r = await client.delete("/healthz")
    assert r.status == 405
    assert (await r.json())["error"]["code"] == "method_not_allowed"


async def test_body_over_the_limit_is_refused(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"max_json_body_bytes": 1024})}
    )
    app = build_app(settings)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"n": len(await request.read())})

    app.router.add_post("/echo", echo)
    async with TestClient(TestServer(app)) as c:
        assert (await (await c.post("/echo", data=b"x" * 1000)).json()) == {"n": 1000}
        r = await c.post("/echo", data=b"x" * 5000)
        assert r.status == 413
        assert (await r.json())["error"]["code"] == "payload_too_large"


async def test_app_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    s = load_settings(None, storage={"data_dir": str(tmp_path)}, server={"port": 0})
    app = build_app(s)
    with pytest.raises(DatabaseNotReady, match="modelpack migrate"):
        async with TestClient(TestServer(app)):
            pass


async def test_job_queue_is_wired(client: TestClient) -> None:
    queue = client.app[JOB_QUEUE]
    jid = await queue.enqueue("nothing-handles-this", {"a": 1})
    assert jid > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}


def test_cli_errors_are_one_sentence_and_nonzero(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [*MODELPACK, "serve", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr

    r = subprocess.run(
        [*MODELPACK, "migrate", "--database-url", "postgresql+asyncpg://postgres@127.0.0.1:1/nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert r.returncode == 1 and "cannot reach the database" in r.stderr and "Traceback" not in r.stderr

    cfg = tmp_path / "bad.toml"
    cfg.write_text("[server]\nport = 'x'\n")
    r = subprocess.run(
        [*MODELPACK, "serve", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert r.returncode == 1 and "server.port" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_serve_prints_where_it_listens_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*MODELPACK, "serve", "--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "listening on" in line or not line:
                break
        assert f"listening on http://127.0.0.1:{port}" in line
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(30) == 0, rest
        assert "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_the_daemon_sets_its_startup_heap_aside_from_the_collector(settings: Settings) -> None:
    """``modelpack serve`` (``tune_heap``) freezes what startup made once the services are open, so a full
    collection under load scans only what serving made; the tests' apps leave the collector alone."""
    import gc

    assert gc.get_freeze_count() == 0
    async with TestClient(TestServer(build_app(settings))):
        assert gc.get_freeze_count() == 0
    try:
        async with TestClient(TestServer(build_app(settings, tune_heap=True))) as c:
            assert gc.get_freeze_count() > 10_000  # the modules, the app and its services
            assert (await c.get("/healthz")).status == 200
    finally:
        gc.unfreeze()  # back to the oldest generation: this test process's objects stay collectable


_CHURN = """
import resource, sys
if sys.argv[1] == "tuned":
    from registry.app.heap import keep_freed_memory
    assert keep_freed_memory()
def rounds(n):  # what an upload does: 256 KiB reads, each copied and freed soon after
    for _ in range(n):
        held = [b"x" * (256 * 1024) for _ in range(64)]
        del held
rounds(2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt's trim and mmap thresholds are glibc's",
)
def test_the_daemon_keeps_freed_memory_instead_of_faulting_it_in_again() -> None:
    """``modelpack serve`` tunes glibc's malloc (registry.app.heap): 16 MiB of 256 KiB buffers freed and allocated
    again, 20 times, costs page faults for every round by default and none once tuned."""

    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True)
        return int(out.stdout)

    assert faults("default") > 20 * 1000  # the heap is trimmed and faulted in again each round
    assert faults("tuned") < 1000
