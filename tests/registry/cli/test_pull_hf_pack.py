"""Issue 13 item 8: an HF-layout pack published with its files and pulled back loads with ``from_pretrained``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.registry.api.live import LiveServer
from tests.registry.cli.clihelp import local_token, run

torch = pytest.importorskip("torch", reason="the pull test loads the pack with transformers (torch)")
transformers = pytest.importorskip("transformers", reason="the pull test loads the pack with transformers")

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_a_pulled_hf_pack_loads_with_from_pretrained_and_gives_the_same_logits(
    server: LiveServer, tmp_path: Path
) -> None:
    from tests.model_core.hf_snapshots import hf_model, save_snapshot

    model = hf_model(seed=3, tie_word_embeddings=False)
    src = save_snapshot(model, tmp_path / "snapshot")
    pack = tmp_path / "pack"
    r = run(server, "import", "hf", str(src), str(pack), "--name", "acme/tiny-llama")
    assert r.exit_code == 0, r.output
    manifest = json.loads((pack / "manifest.json").read_text())
    files = [f["filename"] for f in manifest["files"]]
    assert "config.json" in files

    tok = local_token(server.settings, "--publisher", "alice", "--namespace", "acme")["token"]
    r = run(server, "publish", str(pack), "--name", "acme/tiny-llama", "--json", token=tok)
    assert r.exit_code == 0, r.output
    published = json.loads(r.output)
    assert published["uploaded_shards"] == len(manifest["shards"]) + len(files)

    out = tmp_path / "pulled"
    r = run(server, "pull", "acme/tiny-llama", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["files"] == len(files)
    for name in [*files, *(s["filename"] for s in manifest["shards"])]:
        assert (out / name).read_bytes() == (pack / name).read_bytes(), name
    assert not list(out.glob(".*part*"))

    loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([[1, 5, 9, 42, 7, 3]])
    with torch.no_grad():
        want = model(ids).logits
        got = loaded(ids).logits
    assert torch.equal(got, want)
