"""What the CLI tests against a live registry share: a pack on disk, running a command, a local token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from registry.app.main import cli
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer

SHARDS = [
    ("model-00001-of-00002.safetensors", helpers.shard_bytes(700_000, 21)),
    ("model-00002-of-00002.safetensors", helpers.shard_bytes(12_345, 22)),
]


def write_pack(root: Path, shards: list[tuple[str, bytes]] = SHARDS, **extra: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in shards:
        (root / name).write_bytes(data)
    (root / "manifest.json").write_text(json.dumps(helpers.manifest(shards, **extra), indent=2))
    return root


def run(srv: LiveServer, *args: str, token: str | None = None) -> Result:
    env = {"MODELPACK_REGISTRY": srv.url, "MODELPACK_TOKEN": token or "", "COLUMNS": "250"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def local_token(settings: Settings, *args: str) -> dict[str, Any]:
    db = settings.database_url
    r = CliRunner().invoke(
        cli, ["token", "create", "--database-url", db, "--json", *args], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    data: dict[str, Any] = json.loads(r.output)
    return data
