"""``transformers`` through ``HF_ENDPOINT``: ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained("ns/model",
revision=...)`` load an imported HF pack from the registry and give the logits of the original folder; with
``HF_HUB_OFFLINE=1`` afterwards they load from the cache without a request. Each load runs in a subprocess, so
huggingface_hub reads its environment (HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE) at import as it does for users."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry.settings import Settings
from tests.registry.api.hfclient import curate_by_hand, live, publish_folder, token

torch = pytest.importorskip("torch", reason="the transformers test loads the model (torch)")
transformers = pytest.importorskip(
    "transformers", reason="the transformers test needs transformers (dev extra)"
)
tokenizers = pytest.importorskip("tokenizers", reason="the tiny tokenizer is built with tokenizers")

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

TEXT = "the cat sat on the mat"
LOAD = """
import json, sys, torch, transformers
repo, revision, out = sys.argv[1], sys.argv[2], sys.argv[3]
tok = transformers.AutoTokenizer.from_pretrained(repo, revision=revision)
model = transformers.AutoModelForCausalLM.from_pretrained(repo, revision=revision).eval()
ids = tok(sys.argv[4], return_tensors="pt").input_ids
with torch.no_grad():
    logits = model(ids).logits
torch.save({"ids": ids, "logits": logits}, out)
print(json.dumps({"path": model.name_or_path}))
"""


def tiny_tokenizer(folder: Path) -> None:
    words = ["[UNK]", "[PAD]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran"]
    core = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]")
    )
    core.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(folder)


def load(url: str, home: Path, repo: str, revision: str, out: Path, **env: str) -> str:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))},
        "HF_ENDPOINT": url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ENABLE_HF_TRANSFER": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        **env,
    }
    r = subprocess.run(
        [sys.executable, "-c", LOAD, repo, revision, str(out), TEXT],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    return str(json.loads(r.stdout.strip().splitlines()[-1])["path"])


def test_from_pretrained_through_hf_endpoint_gives_the_original_logits_then_loads_offline(
    settings: Settings, tmp_path: Path
) -> None:
    from model_core.importers.hf import import_hf
    from registry.cli.import_cmd import file_digest
    from tests.model_core.hf_snapshots import hf_model, save_snapshot

    model = hf_model(seed=5, tie_word_embeddings=False)
    src = save_snapshot(model, tmp_path / "snapshot")
    tiny_tokenizer(src)
    pack = import_hf(src, tmp_path / "pack", name="acme/tiny-llama", digest_of=file_digest).parent
    with live(settings) as (srv, seen):
        cid = publish_folder(srv, token(srv), "acme/tiny-llama", pack, tag="v1")["cid"]
        curate_by_hand(srv, "acme/tiny-llama", cid)
        home = tmp_path / "hf-home"
        for revision in ("curated", "v1"):
            out = tmp_path / f"{revision}.pt"
            load(srv.url, home, "acme/tiny-llama", revision, out)
            got = torch.load(out)
            tok = transformers.AutoTokenizer.from_pretrained(src)
            ids = tok(TEXT, return_tensors="pt").input_ids
            assert torch.equal(got["ids"], ids)
            with torch.no_grad():
                want = transformers.AutoModelForCausalLM.from_pretrained(src).eval()(ids).logits
            assert torch.equal(got["logits"], want), revision
        resolves = [r for r in seen.since(0) if "/resolve/" in r[1] and r[0] == "GET"]
        assert {r[1].rsplit("/", 1)[1] for r in resolves} >= {
            "config.json",
            "model.safetensors",
            "tokenizer.json",
        }
        mark = seen.mark()
        out = tmp_path / "offline.pt"
        load(srv.url, home, "acme/tiny-llama", "curated", out, HF_HUB_OFFLINE="1")
        assert seen.since(mark) == []  # not one request: everything from the cache
        assert torch.equal(torch.load(out)["logits"], got["logits"])
