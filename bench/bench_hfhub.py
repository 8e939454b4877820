"""Benchmark: ``huggingface_hub.snapshot_download`` through the Hub read API vs ``modelpack pull``, same pack,
same daemon, same run (issue #16).

A pack of ``--size-mb`` MB (two random weight shards plus config.json) is published to a ``modelpack serve``
subprocess on a fresh SQLite index (no job workers: the gate would reject random weights); then, round-robin
for ``--repeats`` rounds, each into a fresh folder:
  (a) ``modelpack pull bench/hf DEST``                            -- the baseline (a process)
  (b) ``snapshot_download("bench/hf")`` with HF_ENDPOINT=daemon   -- a process with a fresh HF_HOME
Printed: median wall times, (a)/(b) (goal >= 0.8: the Hub client at least 0.8x as fast as a pull), and the
daemon's RSS growth over its RSS before the first download (psutil, sampled every 20 ms; goal < 64 MiB).

    .venv/bin/python bench/bench_hfhub.py [--size-mb 800] [--repeats 3] [--dir /tmp/modelpack-hfhub-bench]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from pinner.unixfs import hash_file

BIN = Path(sys.executable).parent
MODELPACK = str(BIN / "modelpack")
NAME = "bench/hf"
MiB = 1024 * 1024
SNAPSHOT = """
import sys, time
from huggingface_hub import snapshot_download
t = time.perf_counter()
snapshot_download(sys.argv[1], revision="latest", cache_dir=sys.argv[2])
print(time.perf_counter() - t)
"""


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MODELPACK_", "HF_", "HUGGING"))}


def write_pack(folder: Path, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    half = size // 2
    entries = []
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for i, (name, n) in enumerate(zip(names, (half, size - half), strict=True)):
        path = folder / name
        if not path.exists() or path.stat().st_size != n:
            with path.open("wb") as f:
                left, seed = n, i
                while left:
                    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
                    f.write(block[: min(left, len(block))])
                    left -= min(left, len(block))
                    seed += 2
        entries.append(path)
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n')

    def entry(path: Path) -> dict[str, object]:
        with path.open("rb") as f:
            cid = str(hash_file(f).cid)
        sha = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(4 * MiB):
                sha.update(chunk)
        return {
            "filename": path.name,
            "cid": cid,
            "sha256": "sha256:" + sha.hexdigest(),
            "size": path.stat().st_size,
        }

    manifest = {
        "format": "safetensors",
        "model_name": NAME.split("/")[1],
        "model_version": "1.0.0",
        "config": {"vocab_size": 256, "d_model": 64, "dropout": 0.0},
        "shards": [entry(p) for p in entries],
        "files": [entry(folder / "config.json")],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("the daemon exited; see its log")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the daemon did not get ready within 60 s")


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(cmd: list[str], extra: dict[str, str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env() | extra, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=800)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "modelpack-hfhub-bench")
    args = ap.parse_args()
    root: Path = args.dir
    pack = root / "pack"
    print(f"writing a {args.size_mb} MB pack at {pack} ...", flush=True)
    write_pack(pack, args.size_mb * 1000 * 1000)
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    db = f"sqlite+aiosqlite:///{data}/index.sqlite3"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data.mkdir(parents=True)
    log = (root / "daemon.log").open("wb")
    cmd = [MODELPACK, "serve", "--data-dir", str(data), "--database-url", db, "--listen", f"127.0.0.1:{port}"]
    daemon = subprocess.Popen(
        cmd,
        env=env() | {"MODELPACK_STORAGE__FSYNC": "false", "MODELPACK_JOBS__WORKERS": "0"},
        stdout=log,
        stderr=log,
    )
    try:
        wait_ready(url, daemon)
        tok = subprocess.run(
            [
                MODELPACK,
                "token",
                "create",
                "--database-url",
                db,
                "--publisher",
                "bench",
                "--namespace",
                "bench",
                "--json",
            ],
            env=env(),
            capture_output=True,
            text=True,
            check=True,
        )
        token = json.loads(tok.stdout)["token"]
        reg = {"MODELPACK_REGISTRY": url, "MODELPACK_TOKEN": token}
        print("publishing ...", flush=True)
        run([MODELPACK, "publish", str(pack), "--name", NAME], reg)
        rss0 = psutil.Process(daemon.pid).memory_info().rss
        pulls: list[float] = []
        snaps: list[float] = []
        peak = rss0
        for i in range(args.repeats):
            out = root / f"pull-{i}"
            shutil.rmtree(out, ignore_errors=True)
            with PeakRss(daemon.pid) as p:
                pulls.append(run([MODELPACK, "pull", NAME, str(out)], reg))
            peak = max(peak, p.peak)
            cache = root / f"hf-{i}"
            shutil.rmtree(cache, ignore_errors=True)
            hub = {"HF_ENDPOINT": url, "HF_HOME": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1",
                   "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip
            with PeakRss(daemon.pid) as p:
                snaps.append(run([sys.executable, "-c", SNAPSHOT, NAME, str(cache)], hub))
            peak = max(peak, p.peak)
            for name in ("model-00001-of-00002.safetensors", "config.json"):
                got = next(cache.rglob(f"snapshots/*/{name}")).read_bytes()
                assert got == (pack / name).read_bytes(), name
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            print(f"round {i + 1}: pull {pulls[-1]:.2f} s, snapshot_download {snaps[-1]:.2f} s", flush=True)
        a, b = statistics.median(pulls), statistics.median(snaps)
        mb = args.size_mb
        print(f"(a) modelpack pull         median {a:.2f} s  ({mb / a:.0f} MB/s)")
        print(f"(b) snapshot_download      median {b:.2f} s  ({mb / b:.0f} MB/s)")
        print(f"(a)/(b) = {a / b:.2f}  (goal >= 0.8)")
        print(f"daemon RSS growth: {(peak - rss0) / MiB:.1f} MiB over {rss0 / MiB:.0f} MiB  (goal < 64 MiB)")
    finally:
        daemon.terminate()
        daemon.wait(30)
        log.close()


if __name__ == "__main__":
    main()
