"""The official Pinning Service API compliance suite (and the reference JS client) against a live daemon.

Tooling: tests/psa_compliance (`make testnode` installs it with --ignore-scripts); the suite reads the
spec from tests/psa_compliance/spec, never the network. Its exit status says nothing: its JSON report must.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry.app.daemon import build_app
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.pinning.conftest import psa_settings, raw_cid

TOOLING = Path(__file__).resolve().parents[2] / "psa_compliance"
SUITE = TOOLING / "node_modules" / "@ipfs-shipyard" / "pinning-service-compliance"
pytestmark = [pytest.mark.ipfs, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def _require() -> str:
    node = shutil.which("node")
    if node is None or not (SUITE / "package.json").is_file():
        pytest.fail(
            f"the PSA tooling is not installed: run `make testnode` (looked in {TOOLING})", pytrace=False
        )
    return node


async def _node(*args: str, timeout: float = 400.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        _require(), *args, cwd=TOOLING, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.fixture
async def endpoint(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    app = build_app(psa_settings(settings, max_pins=1000))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        token = await helpers.token(app, "compliance", scopes=("pin",))
        yield str(client.make_url("/psa")), token


async def test_the_official_compliance_suite_passes_every_check(endpoint: tuple[str, str]) -> None:
    url, token = endpoint
    report = SUITE / "dist" / "docs" / "127.0.0.1.json"
    report.unlink(missing_ok=True)
    _, out = await _node("run_compliance.mjs", url, token)
    assert report.is_file(), f"the suite wrote no report; its output ends:\n{out[-4000:]}"
    result = json.loads(report.read_text())
    assert result["success"] and result["failed"] == 0 and result["passed"] > 0, (result, out[-6000:])


async def test_the_reference_js_client_round_trips(endpoint: tuple[str, str]) -> None:
    url, token = endpoint
    rc, out = await _node("roundtrip.mjs", url, token, raw_cid(b"rt-1"), raw_cid(b"rt-2"), timeout=120)
    assert rc == 0, out[-4000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["added"]["cid"] == raw_cid(b"rt-1") and seen["added"]["status"] == "queued"
    assert seen["got"]["requestid"] == seen["added"]["requestid"]
    assert seen["listed"]["ids"] == [seen["added"]["requestid"]]
    assert (
        seen["replaced"]["cid"] == raw_cid(b"rt-2")
        and seen["replaced"]["requestid"] != seen["added"]["requestid"]
    )
    assert seen["afterDelete"] == "404"
