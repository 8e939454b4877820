"""The sandbox: every way a validation can end becomes a report with a verdict and a documented exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model_core import worker
from model_core.sandbox import EXIT_CODES, SandboxLimits, child_env, validate_pack
from tests.model_core.conftest import (
    read_manifest,
    reseal,
    rewrite_shard,
    shard_names,
    shard_with,
    write_manifest,
)

FAST = SandboxLimits(memory_bytes=8 * 1024**3, cpu_seconds=120, wall_seconds=120, time_budget_s=60, threads=1)


def run_cli(*args: str) -> tuple[int, dict]:
    report = Path(args[2])
    proc = subprocess.run(
        [sys.executable, "-m", "model_core.validate", *args], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, json.loads(report.read_text())


def test_validate_module_does_not_import_torch() -> None:
    # nor pydantic and multiformats (the full manifest format): the supervisor starts its worker sooner
    heavy = ("torch", "pydantic", "multiformats", "rfc8785")
    code = (
        "import sys, model_core.validate, model_core.sandbox\n"
        f"found = [m for m in {heavy!r} if m in sys.modules]\n"
        "sys.exit(f'imported: {found}' if found else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_worker_imports_no_manifest_schema_for_a_pack_without_evaluation() -> None:
    # pydantic's models load only where a pack's evaluation block is read (model_core.behaviour)
    code = (
        "import sys, model_core.worker, model_core.behaviour, model_core.loader, model_core.smoke\n"
        "found = [m for m in ('pydantic', 'multiformats', 'rfc8785') if m in sys.modules]\n"
        "sys.exit(f'imported: {found}' if found else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_healthy_pack_passes_with_a_full_report(tiny_pack: Path, tmp_path: Path) -> None:
    rc, report = run_cli(str(tiny_pack), "--report", str(tmp_path / "r.json"), "--threads", "1")
    assert rc == 0 and report["verdict"] == "pass" and report["exit_code"] == 0
    assert report["smoke"]["passed"] and len(report["smoke"]["checks"]) == 10
    assert report["load"]["dtype"] == "float32" and report["limits"]["threads"] == 1


def test_invalid_pack_is_refused_before_a_child_starts(tiny_pack: Path, tmp_path: Path) -> None:
    m = read_manifest(tiny_pack)
    m["shards"][0]["filename"] = "../escape.safetensors"
    write_manifest(tiny_pack, m)
    rc, report = run_cli(str(tiny_pack), "--report", str(tmp_path / "r.json"))
    assert rc == 10 and report["verdict"] == "invalid_pack" and "unsafe" in report["reason"]
    assert "smoke" not in report


def test_pack_limits_reach_the_checks(tiny_pack: Path, tmp_path: Path) -> None:
    rc, report = run_cli(str(tiny_pack), "--report", str(tmp_path / "r.json"), "--header-max-bytes", "100")
    assert rc == 10 and "more than the limit of 100" in report["reason"]
    rc, report = run_cli(str(tiny_pack), "--report", str(tmp_path / "r.json"), "--max-shards", "2")
    assert rc == 10 and "more than the limit of 2" in report["reason"]
    rc, report = run_cli(str(tiny_pack), "--report", str(tmp_path / "r.json"), "--filename-max-len", "10")
    assert rc == 10 and "longer than 10 characters" in report["reason"]


def test_usage_errors_exit_2(tiny_pack: Path, tmp_path: Path) -> None:
    for bad in (["--wall-seconds", "0"], ["--memory-bytes", "lots"]):
        args = [
            sys.executable,
            "-m",
            "model_core.validate",
            str(tiny_pack),
            "--report",
            str(tmp_path / "r.json"),
        ]
        assert subprocess.run([*args, *bad], capture_output=True, timeout=60).returncode == 2


def test_oversized_pack_is_refused_up_front(tiny_pack: Path, tmp_path: Path) -> None:
    report = validate_pack(
        tiny_pack, tmp_path / "r.json", SandboxLimits(memory_bytes=100_000, overhead_bytes=0)
    )
    assert report["verdict"] == "invalid_pack" and report["error_code"] == "pack_too_large"
    assert "budget of 100000 bytes" in report["reason"]


def test_too_little_memory_to_start_is_out_of_memory(tiny_pack: Path, tmp_path: Path) -> None:
    report = validate_pack(
        tiny_pack, tmp_path / "r.json", SandboxLimits(memory_bytes=1_000_000, overhead_bytes=0)
    )
    assert report["verdict"] == "out_of_memory" and report["exit_code"] == 12


def test_flipped_byte_is_an_invalid_pack_from_the_child(tiny_pack: Path, tmp_path: Path) -> None:
    name = shard_names(tiny_pack)[0]
    data = bytearray((tiny_pack / name).read_bytes())
    data[-1] ^= 0xFF
    (tiny_pack / name).write_bytes(data)
    report = validate_pack(tiny_pack, tmp_path / "r.json", FAST)
    assert report["verdict"] == "invalid_pack" and "sha256" in report["reason"] and name in report["reason"]


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_weights_fail_the_smoke_suite(tiny_pack: Path, tmp_path: Path, bad: str) -> None:
    key = "layers.0.attn.q_proj.weight"

    def poison(t: dict[str, torch.Tensor]) -> None:
        t[key][0, 0] = float(bad)

    rewrite_shard(tiny_pack, shard_with(tiny_pack, key), poison)
    report = validate_pack(tiny_pack, tmp_path / "r.json", FAST)
    assert report["verdict"] == "smoke_failed" and report["exit_code"] == 11
    assert key in report["reason"] and "non-finite" in report["reason"]


def test_config_that_disagrees_with_the_tensors(tiny_pack: Path, tmp_path: Path) -> None:
    m = read_manifest(tiny_pack)
    m["config"]["dim_ff"] = 100
    write_manifest(tiny_pack, m)
    report = validate_pack(tiny_pack, tmp_path / "r.json", FAST)
    assert report["verdict"] == "invalid_pack" and "config and weights disagree" in report["reason"]


def test_wall_clock_limit_kills_the_child(tiny_pack: Path, tmp_path: Path) -> None:
    rc, report = run_cli(str(tiny_pack), "--report", str(tmp_path / "r.json"), "--wall-seconds", "0.2")
    assert rc == 13 and report["verdict"] == "timed_out" and "wall-clock limit of 0.2 s" in report["reason"]


def test_cpu_limit_is_a_timeout(tiny_pack: Path, tmp_path: Path) -> None:
    spin = lambda result: [sys.executable, "-c", "while True: pass"]  # noqa: E731
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=60)
    report = validate_pack(tiny_pack, tmp_path / "r.json", limits, command=spin)
    assert report["verdict"] == "timed_out" and "CPU-time limit of 1 s" in report["reason"]


def test_a_signal_is_a_crash_naming_it(tiny_pack: Path, tmp_path: Path) -> None:
    segv = lambda result: [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]  # noqa: E731
    report = validate_pack(tiny_pack, tmp_path / "r.json", FAST, command=segv)
    assert report["verdict"] == "crashed" and report["signal"] == "SIGSEGV" and report["exit_code"] == 14


def test_an_exit_without_a_report_is_a_crash(tiny_pack: Path, tmp_path: Path) -> None:
    die = lambda result: [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"]  # noqa: E731
    report = validate_pack(tiny_pack, tmp_path / "r.json", FAST, command=die)
    assert (
        report["verdict"] == "crashed" and "status 3" in report["reason"] and "boom" in report["stderr_tail"]
    )


def test_child_sees_no_secrets(tiny_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPACK_TOKEN", "t0k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("DB_PASSWORD", "pw")
    monkeypatch.setenv("GITHUB_TOKEN", "gh")
    dump = (
        "import json, os, sys; "
        "open(sys.argv[1], 'w').write(json.dumps({'verdict': 'pass', 'reason': 'env', 'env': dict(os.environ)}))"
    )
    report = validate_pack(
        tiny_pack, tmp_path / "r.json", FAST, command=lambda r: [sys.executable, "-c", dump, str(r)]
    )
    env = report["env"]
    assert report["verdict"] == "pass"
    assert not any(v in ("t0k", "s3cr3t", "pw", "gh") for v in env.values())
    assert env["OMP_NUM_THREADS"] == "1" and "PATH" in env


def test_child_env_keeps_only_essentials() -> None:
    env = child_env(
        {"PATH": "/bin", "HOME": "/h", "MODELPACK_DATABASE__URL": "x", "API_KEY": "k", "LANG": "C"}, 2
    )
    assert env["PATH"] == "/bin" and env["HOME"] == "/h" and env["LANG"] == "C"
    assert "MODELPACK_DATABASE__URL" not in env and "API_KEY" not in env and env["MKL_NUM_THREADS"] == "2"


def test_worker_reports_out_of_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(_: object) -> dict:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(worker, "run", exhausted)
    rc = worker.main([str(tmp_path), "--result", str(tmp_path / "res.json")])
    result = json.loads((tmp_path / "res.json").read_text())
    assert rc == EXIT_CODES["out_of_memory"] and result["verdict"] == "out_of_memory"


@pytest.mark.slow
def test_address_space_limit_gives_out_of_memory(tmp_path: Path) -> None:
    """A pack that passes the (optimistic) preflight but cannot be held under RLIMIT_AS."""
    pack = tmp_path / "big"
    pack.mkdir()
    save_file({"embed.weight": torch.zeros(32000, 4096)}, str(pack / "model-00001-of-00001.safetensors"))
    config = {
        "vocab_size": 32000,
        "d_model": 4096,
        "num_layers": 1,
        "num_heads": 32,
        "num_kv_heads": 8,
        "dim_ff": 64,
    }
    manifest = {
        "format": "safetensors",
        "config": config,
        "shards": [
            {"filename": "model-00001-of-00001.safetensors", "cid": "", "sha256": "sha256:" + "0" * 64}
        ],
    }
    (pack / "manifest.json").write_text(json.dumps(manifest))
    reseal(pack, "model-00001-of-00001.safetensors")
    limits = SandboxLimits(memory_bytes=900 * 1024**2, overhead_bytes=0, wall_seconds=120, threads=1)
    report = validate_pack(pack, tmp_path / "r.json", limits)
    assert report["verdict"] == "out_of_memory" and report["exit_code"] == 12, report
