"""The gate's validation folder holds the manifest's ``files`` (config.json, reference texts...) as well
as its shards, linked from the blockstore like them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from registry.api.keys import BLOCKSTORE
from registry.gate.validation import ValidationService
from tests.registry.api import helpers
from tests.registry.gate import packs
from tests.registry.gate.conftest import GateEnv

README = b"# tiny\nA reference text the evaluation reads.\n"


async def test_the_validation_folder_holds_the_files_too(env: GateEnv) -> None:
    pack = packs.make_pack(env.tmp / "pack")
    (pack / "README.md").write_bytes(README)
    m = packs.manifest_of(pack)
    m["files"] = [
        {
            "filename": "README.md",
            "cid": packs.cid_of(README),
            "sha256": "sha256:" + hashlib.sha256(README).hexdigest(),
            "size": len(README),
            "unixfs": m.get("unixfs"),
        }
    ]
    packs.write_manifest(pack, m)
    r = await helpers.upload(env.client, env.alice, README, cid=packs.cid_of(README))
    assert r.status in (200, 201), await r.text()
    cid = await env.publish(pack)

    seen: dict[str, bytes] = {}

    def check(pack_dir: Path) -> None:
        seen["README.md"] = (pack_dir / "README.md").read_bytes()
        seen["links"] = b"yes" if (pack_dir / "README.md").is_symlink() else b"no"

    runner = packs.FakeRunner(check=check)
    g = env.gate
    gate = ValidationService(
        env.sessions, g.config, g.curation, None, store=env.app[BLOCKSTORE], runner=runner
    )
    view = await gate.validate(cid)
    assert view.verdict == "pass", view
    assert seen == {"README.md": README, "links": b"yes"}
    assert view.report is not None and view.report["shard_sources"]["README.md"] == "blockstore"
