"""The public validation report names no host path: the sandbox's work folder, the pack folder and the
blockstore's files become ``<host>/NAME``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.api.keys import BLOCKSTORE
from registry.gate.hostpaths import scrub_text
from registry.gate.validation import ValidationService
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv


def test_scrub_keeps_urls_names_and_the_file_name() -> None:
    assert (
        scrub_text("cannot open /tmp/mp-x/pack/a.safetensors: bad") == "cannot open <host>/a.safetensors: bad"
    )
    for same in ("http://127.0.0.1:5001/api/v0/add", "acme/tiny@stable", "ratio 1/2", "a /root"):
        assert scrub_text(same) == same


async def test_the_validation_report_served_has_no_host_paths(env: GateEnv, tmp_path: Path) -> None:
    cid = await env.make_and_publish()
    work = "/var/lib/modelpack-secret/work/validate-123"
    result: dict[str, Any] = {
        "verdict": "invalid_pack",
        "reason": f"cannot read {work}/pack/model.safetensors: truncated",
        "pack_dir": f"{work}/pack",
        "checks": [{"file": f"{work}/pack/model.safetensors", "note": "see /opt/venv/lib/python3/x.py"}],
    }
    g = env.gate
    runner = packs.FakeRunner(result)
    svc = ValidationService(
        env.sessions, g.config, g.curation, None, store=env.app[BLOCKSTORE], runner=runner
    )
    await svc.validate(cid)
    status, body = await env.get(f"/v1/packs/{cid}/validation")
    assert status == 200
    text = str(body)
    assert "modelpack-secret" not in text and "/opt/venv" not in text, text
    v = body["validation"]
    assert v["reason"] == "cannot read <host>/model.safetensors: truncated"
    assert v["report"]["pack_dir"] == "<host>/pack"
    detail = await (await env.client.get(f"/v1/packs/{cid}")).json()
    assert "modelpack-secret" not in str(detail)
    assert detail["validation"]["reason"] == "cannot read <host>/model.safetensors: truncated"
