"""Database-backed requests against a bare aiohttp handler (issue #17 item 1), same run.

Each server runs pinned to CPU 0 (``taskset``); the load generator is ``wrk`` (Debian package) pinned to CPU 1,
32 keep-alive connections, ``--duration`` s per target, ``--rounds`` interleaved rounds, medians reported. The
bare handler runs just before each target, and each ratio is the median of those pairs' ratios. The read
cache is off (``server.read_cache_ttl_s = 0``) so every request reaches the database (the hot reads are
remembered only while nothing commits: under SQLite's ``PRAGMA data_version``, read once per pass of the event
loop, or Postgres's ``pg_current_snapshot()``; never stale, see registry.db.fastread and registry.db.remember).
Targets: the bare handler (baseline), ``/healthz``, pointer resolve, pack detail, the model list and an
authenticated ``whoami``; on SQLite and (``--postgres``) on Postgres. Goal: each ≥ 0.5× the baseline's
requests/s, p99 < 50 ms.

Each target also reports the server's CPU time per request (user + system, every thread, from ``/proc``), and on
Postgres its backends' (children of the postmaster), in microseconds, and the bare handler's CPU per request over
the server's. Requests/s move with whatever else the host runs (a virtual machine's neighbours take its CPUs
for a while); CPU time per request does not count that time, so it is the steadier comparison.

Every connection asks for the same URL, as a fleet resolving one pointer does; on Postgres identical reads that
queue for a connection share one (registry.db.fastread). ``resolve_20`` and ``pack_20`` spread the requests over
20 pointers / 20 packs (a wrk script cycles through them), so fewer of them are identical.

wrk's own ceiling: one wrk thread on its own core drives well over the bare handler's rate, so the baseline is
bounded by the one server core, as every target is.

Postgres's backends float over both cores, so they also take time from the server's core (a woken backend
preempts it). ``--pin-postgres`` moves the local Postgres server's postmaster, and so every backend it forks
during the run, to the load generator's CPU, as a database on its own machine would be, and puts its affinity
back afterwards (its background writers stay where they were). Both setups are worth reporting.

    .venv/bin/python bench/bench_requests.py [--duration 5] [--rounds 3] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_api  # noqa: E402  (the servers and seeding of the API benchmark)

SERVER_CPU, LOAD_CPU = "0", "1"
CONNECTIONS = 32


class PinnedServer(bench_api.Server):
    def __init__(self, *args: str) -> None:
        super().__init__(*args)
        subprocess.run(
            ["taskset", "-a", "-p", "-c", SERVER_CPU, str(self.proc.pid)], check=True, capture_output=True
        )


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str | list[str], duration: float, headers: dict[str, str]) -> dict[str, float]:
    """One wrk run pinned to the load CPU: requests/s, p50, p99 and the count of non-2xx answers. Several URLs
    (of one server): each connection cycles through their paths."""
    urls = [url] if isinstance(url, str) else url
    script = None
    if len(urls) > 1:
        paths = ", ".join(json.dumps(urlsplit(u).path) for u in urls)
        script = tempfile.NamedTemporaryFile("w", suffix=".lua")  # noqa: SIM115 (closed below)
        script.write(
            f"local paths = {{{paths}}}\nlocal i = 0\n"
            "request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n"
        )
        script.flush()
    cmd = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(duration))}s",
        "--latency",
    ]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if script is not None:
        cmd += ["-s", script.name]
    try:
        out = subprocess.run([*cmd, urls[0]], capture_output=True, text=True, check=True).stdout
    finally:
        if script is not None:
            script.close()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": float(bad.group(1)) if bad else 0.0,
        "n": total,
    }


def cpu_s(proc: Any) -> float:
    """CPU seconds (user + system, every thread) of a psutil process; 0 for one that is gone."""
    try:
        t = proc.cpu_times()
    except Exception:  # psutil.NoSuchProcess: a backend that exited
        return 0.0
    return float(t.user + t.system)


def measured(
    url: str | list[str], duration: float, headers: dict[str, str], server: Any, db: Any
) -> dict[str, float]:
    """:func:`wrk` plus the CPU time each request cost the server process and (Postgres: ``db`` is the
    postmaster) the database's backends, in microseconds. The CPU per request does not count time the machine
    gave to others, so it varies less than requests/s on a busy host."""
    server_before = cpu_s(server)
    backends_before = {b.pid: cpu_s(b) for b in (db.children() if db is not None else [])}
    r = wrk(url, duration, headers)
    server_s = cpu_s(server) - server_before
    # per backend, from its own start when it was forked meanwhile (one that exited meanwhile is not counted)
    db_s = sum(cpu_s(b) - backends_before.get(b.pid, 0.0) for b in (db.children() if db is not None else []))
    n = max(r["n"], 1.0)
    r["server_us"] = server_s / n * 1e6
    r["db_us"] = max(db_s, 0.0) / n * 1e6
    return r


Target = tuple[str | list[str], dict[str, str]]


def targets(base: str, token: str, pack_cids: list[str]) -> dict[str, Target]:
    """The URLs of each target (the packs' pointers v0, v1, ... are set by :func:`seed`)."""
    auth = {"Authorization": f"Bearer {token}"}
    return {
        "healthz": (f"{base}/healthz", {}),
        "resolve": (f"{base}/v1/models/acme/tiny/pointers/latest", {}),
        "resolve_20": ([f"{base}/v1/models/acme/tiny/pointers/v{i}" for i in range(len(pack_cids))], {}),
        "pack": (f"{base}/v1/packs/{pack_cids[-1]}", {}),
        "pack_20": ([f"{base}/v1/packs/{cid}" for cid in pack_cids], {}),
        "models": (f"{base}/v1/models", {}),
        "whoami": (f"{base}/v1/whoami", auth),
    }


def seed(base: str, token: str) -> list[str]:
    """20 packs of acme/tiny, the pointer v<i> on the i-th; their CIDs."""
    from registry.client import RegistryClient

    cids = bench_api.seed_pack_list(base, token, 20)
    with RegistryClient(base, token) as client:
        for i, cid in enumerate(cids):
            client.set_pointer("acme/tiny", f"v{i}", cid)
    return cids


def run_db(work: Path, name: str, db_url: str, duration: float, rounds: int) -> dict[str, Any]:
    import psutil

    data_dir = work / name
    data_dir.mkdir(parents=True)
    token = asyncio.run(bench_api.seed_local(db_url))
    bare_port, reg_port = bench_api.free_port(), bench_api.free_port()
    bare = PinnedServer("_bare", str(bare_port))
    reg = PinnedServer("_registry", str(data_dir), db_url, str(reg_port), "0")
    try:
        base = f"http://127.0.0.1:{reg_port}"
        tg: dict[str, Target] = {
            "baseline": (f"http://127.0.0.1:{bare_port}/constant", {}),
            **targets(base, token, seed(base, token)),
        }
        for url, headers in tg.values():
            wrk(url, 1.0, headers)  # warm-up
        db = None if db_url.startswith("sqlite") else psutil.Process(_postmaster_pid())
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in tg}
        for _ in range(rounds):
            for key, (url, headers) in tg.items():
                if key == "baseline":
                    continue
                # the bare handler just before each target: a ratio of two runs seconds apart, so the host's
                # drift (its speed changes over tens of seconds) mostly cancels
                bare_run = measured(tg["baseline"][0], duration, tg["baseline"][1], bare.ps, None)
                run = measured(url, duration, headers, reg.ps, db)
                run["ratio"] = run["rps"] / bare_run["rps"]
                run["cpu_ratio"] = bare_run["server_us"] / max(run["server_us"], 1e-9)
                runs["baseline"].append(bare_run)
                runs[key].append(run)
    finally:
        bare.stop()
        reg.stop()
    metrics = ("rps", "p50_ms", "p99_ms", "errors", "server_us", "db_us")
    return {
        key: {m: statistics.median(r[m] for r in rs) for m in (*metrics, "ratio", "cpu_ratio") if m in rs[0]}
        for key, rs in runs.items()
    }


def _postmaster_pid() -> int:
    """The local Postgres server's postmaster: the parent of this connection's backend."""
    import asyncpg

    from tests import dbutil

    async def postmaster() -> int:
        conn = await asyncpg.connect(host=dbutil.PG_HOST, port=dbutil.PG_PORT, user=dbutil.PG_USER)
        try:  # read while the backend lives: it exits with the connection
            stat = Path(f"/proc/{await conn.fetchval('SELECT pg_backend_pid()')}/stat").read_text()
        finally:
            await conn.close()
        return int(stat.rsplit(")", 1)[1].split()[1])

    return asyncio.run(postmaster())


@contextmanager
def pinned_postgres(pin: bool) -> Iterator[None]:
    """With ``pin``, the Postgres postmaster (so the backends it forks meanwhile) on the load CPU."""
    if not pin:
        yield
        return
    pid = _postmaster_pid()
    before = ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))
    subprocess.run(["taskset", "-a", "-p", "-c", LOAD_CPU, str(pid)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["taskset", "-a", "-p", "-c", before, str(pid)], check=True, capture_output=True)


def report(name: str, r: dict[str, Any]) -> None:
    base, base_us = r["baseline"]["rps"], r["baseline"]["server_us"]
    print(
        f"{name}: bare aiohttp {base:8.0f} req/s  p99 {r['baseline']['p99_ms']:.1f} ms  "
        f"server CPU {base_us:.0f} us/req"
    )
    for key, x in r.items():
        if key == "baseline":
            continue
        db = f" + db {x['db_us']:.0f}" if x["db_us"] else ""
        print(
            f"  {key:10s} {x['rps']:8.0f} req/s  ratio {x['ratio']:.2f} (goal >= 0.5)  "
            f"p50 {x['p50_ms']:.1f} ms  p99 {x['p99_ms']:.1f} ms (goal < 50)  non-2xx {x['errors']:.0f}  "
            f"CPU {x['server_us']:.0f}{db} us/req (bare/server {x['cpu_ratio']:.2f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument(
        "--pin-postgres", action="store_true", help="run the local Postgres server on the load CPU"
    )
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="modelpack-bench-req-", dir=args.dir))
    out: dict[str, Any] = {}
    try:
        if not args.skip_sqlite:
            url = f"sqlite+aiosqlite:///{work / 'sqlite' / 'index.sqlite3'}"
            out["sqlite"] = run_db(work, "sqlite", url, args.duration, args.rounds)
            report("SQLite", out["sqlite"])
        if args.postgres:
            from tests import dbutil

            name = dbutil.unique_name("modelpack_bench")
            dbutil.pg_create(name)
            try:
                with pinned_postgres(args.pin_postgres):
                    out["postgres"] = run_db(work, "pg", dbutil.pg_url(name), args.duration, args.rounds)
            finally:
                dbutil.pg_drop(name)
            report("Postgres", out["postgres"])
        print(json.dumps(out, indent=2), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
