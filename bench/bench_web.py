"""Web page, event stream and webhook benchmark (issue #15), each figure beside a baseline of the same run.

(a) The model page ``/ui/models/acme/tiny`` and the pack page ``/ui/packs/{cid}`` with ``--packs`` packs in the
    index (SQLite, bulk rows beside one real published pack), 32 keep-alive connections for ``--duration`` s,
    against a bare aiohttp handler returning a constant (bench_api's), in interleaved ``--rounds``: requests/s,
    ratio (goal >= 0.3) and p99 (goal < 50 ms). The load generator is its own process.
(b) Event latency: a subscriber on ``GET /v1/events/stream``; ``--events`` pointer moves through the API
    (``PUT /v1/models/acme/tiny/pointers/bench``), one at a time. Reported: the median and p90 of (event
    received on the stream - PUT answered), the commit being before the answer (goal: median < 100 ms), and of
    (received - PUT sent), an upper bound.
(c) Webhook delivery adds no work to the transaction that made the event: the SQL statements of one publish,
    with no webhook endpoint and with 5, in-process (counted on the engine): equal is the goal.

    .venv/bin/python bench/bench_web.py [--duration 10] [--rounds 3] [--packs 10000] [--events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_api  # noqa: E402  (its server processes and load generator)


async def bulk_packs(db_url: str, count: int, per_model: int = 100) -> None:
    """``count`` listed packs in models m0.. of namespace acme (rows only: the index's size is the point)."""
    from sqlalchemy import insert, select

    from pinner.cids import RAW, cid_bytes_v1, cid_str
    from registry.db.base import utcnow
    from registry.db.engine import create_engine
    from registry.db.models import Manifest, Model, Namespace, Pack, PackState

    engine = create_engine(db_url)
    now = utcnow()
    try:
        async with engine.begin() as conn:
            ns_id = (await conn.execute(select(Namespace.id).where(Namespace.name == "acme"))).scalar_one()
            models = [
                {"id": 10_000 + m, "namespace_id": ns_id, "name": f"m{m}", "created_at": now}
                for m in range((count + per_model - 1) // per_model)
            ]
            await conn.execute(insert(Model), models)
            manifests, packs = [], []
            for i in range(count):
                cid = cid_str(cid_bytes_v1(RAW, hashlib.sha256(b"pack%d" % i).digest()))
                manifests.append(
                    {"cid": cid, "manifest": b"{}", "total_size": 1, "shard_count": 1, "created_at": now}
                )
                packs.append(
                    {
                        "cid": cid,
                        "model_id": 10_000 + i // per_model,
                        "model_version": str(i),
                        "state": PackState.AVAILABLE,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            await conn.execute(insert(Manifest), manifests)
            await conn.execute(insert(Pack), packs)
    finally:
        await engine.dispose()


def bench_pages(work: Path, duration: float, rounds: int, count: int) -> dict[str, Any]:
    data_dir = work / "reg"
    db_url = f"sqlite+aiosqlite:///{data_dir / 'index.sqlite3'}"
    data_dir.mkdir(parents=True)
    token = asyncio.run(bench_api.seed_local(db_url))
    bare_port, reg_port = bench_api.free_port(), bench_api.free_port()
    bare = bench_api.Server("_bare", str(bare_port))
    reg = bench_api.Server("_registry", str(data_dir), db_url, str(reg_port))
    try:
        base = f"http://127.0.0.1:{reg_port}"
        cid = bench_api.seed_packs(base, token, 20)
        asyncio.run(bulk_packs(db_url, count))
        targets = {
            "baseline": [f"http://127.0.0.1:{bare_port}/constant"],
            "model_page": [f"{base}/ui/models/acme/tiny"],
            "pack_page": [f"{base}/ui/packs/{cid}?model=acme/tiny"],
        }
        for urls in targets.values():
            bench_api.load(urls, 1.0)  # warm-up
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
        for _ in range(rounds):
            for key, urls in targets.items():
                runs[key].append(bench_api.load(urls, duration))
    finally:
        bare.stop()
        reg.stop()
    out: dict[str, Any] = {}
    for key, results in runs.items():
        out[key] = {
            m: statistics.median(r[m] for r in results) for m in ("rps", "p50_ms", "p99_ms", "errors")
        }
        out[key]["rounds_rps"] = [round(r["rps"]) for r in results]
    return out


async def _event_latency(base: str, token: str, cids: list[str], n: int) -> dict[str, float]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    after_answer: list[float] = []
    after_send: list[float] = []
    async with aiohttp.ClientSession() as http:
        stream = await http.get(
            f"{base}/v1/events/stream?type=pointer.moved", timeout=aiohttp.ClientTimeout()
        )
        assert stream.status == 200
        await stream.content.readline()  # retry: line
        current = None
        for i in range(n):
            to = cids[i % len(cids)]
            if to == current:
                to = cids[(i + 1) % len(cids)]
            cond = {"If-Match": f'"{current}"'} if current else {"If-None-Match": "*"}
            sent = time.perf_counter()
            r = await http.put(
                f"{base}/v1/models/acme/tiny/pointers/bench",
                json={"cid": to, "reason": "bench"},
                headers=headers | cond,
            )
            answered = time.perf_counter()
            assert r.status in (200, 201), await r.text()
            current = to
            while True:  # the frame for this move
                line = (await stream.content.readline()).decode()
                if line.startswith("data: ") and json.loads(line[6:])["payload"]["to"] == to:
                    got = time.perf_counter()
                    break
            after_answer.append(1000 * (got - answered))
            after_send.append(1000 * (got - sent))
        stream.close()

    def pct(xs: list[float], q: float) -> float:
        return sorted(xs)[int(len(xs) * q)]

    return {
        "median_after_answer_ms": statistics.median(after_answer),
        "p90_after_answer_ms": pct(after_answer, 0.9),
        "median_after_send_ms": statistics.median(after_send),
        "p90_after_send_ms": pct(after_send, 0.9),
        "events": n,
    }


def bench_events(work: Path, n: int) -> dict[str, Any]:
    data_dir = work / "ev"
    db_url = f"sqlite+aiosqlite:///{data_dir / 'index.sqlite3'}"
    data_dir.mkdir(parents=True)
    token = asyncio.run(bench_api.seed_local(db_url))
    port = bench_api.free_port()
    reg = bench_api.Server("_registry", str(data_dir), db_url, str(port))
    try:
        base = f"http://127.0.0.1:{port}"
        from registry.client import RegistryClient

        bench_api.seed_packs(base, token, 3)
        with RegistryClient(base, token) as client:
            cids = [p["cid"] for p in client.versions("acme/tiny")][:3]
        return asyncio.run(_event_latency(base, token, cids, n))
    finally:
        reg.stop()


async def _publish_statements(work: Path, endpoints: int) -> int:
    """SQL statements of one publish (POST /v1/models/acme/tiny/packs) with ``endpoints`` webhook endpoints."""
    from aiohttp.test_utils import TestClient, TestServer
    from sqlalchemy import event

    from registry.api.keys import ENGINE
    from registry.app.daemon import build_app
    from registry.settings import load_settings
    from tests.registry.api import helpers

    data_dir = work / f"hooks{endpoints}"
    data_dir.mkdir(parents=True)
    await bench_api.seed_local(f"sqlite+aiosqlite:///{data_dir / 'index.sqlite3'}")  # the schema
    settings = load_settings(
        None,
        storage={"data_dir": str(data_dir)},
        database={"url": f"sqlite+aiosqlite:///{data_dir / 'index.sqlite3'}"},
        server={"access_log": False},
        jobs={"workers": 0},
    )
    app = build_app(settings)
    async with TestClient(TestServer(app)) as client:
        admin = await helpers.token(app, "root", scopes=("admin",))
        alice = await helpers.token(app, "alice", ["acme"])
        for i in range(endpoints):
            r = await client.post(
                "/v1/namespaces/acme/webhooks",
                json={"url": f"http://127.0.0.1:9/hook{i}"},
                headers=helpers.bearer(admin),
            )
            assert r.status == 201, await r.text()
        shard = ("model-00001-of-00001.safetensors", b"bench bytes")
        assert (await helpers.upload(client, alice, shard[1])).status in (200, 201)
        seen: list[str] = []
        target = app[ENGINE].sync_engine
        listener = lambda *a: seen.append(a[2])  # noqa: E731
        event.listen(target, "before_cursor_execute", listener)
        try:
            r = await helpers.publish(client, alice, "acme/tiny", {"manifest": helpers.manifest([shard])})
            assert r.status == 201, await r.text()
        finally:
            event.remove(target, "before_cursor_execute", listener)
    return len(seen)


def bench_webhook_work(work: Path) -> dict[str, int]:
    return {
        "statements_without_endpoints": asyncio.run(_publish_statements(work, 0)),
        "statements_with_5_endpoints": asyncio.run(_publish_statements(work, 5)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--packs", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelpack-bench-web-", dir=args.dir))
    p = bench_pages(work, args.duration, args.rounds, args.packs)
    base = p["baseline"]["rps"]
    print(f"(a) bare aiohttp constant: {base:8.0f} req/s  p99 {p['baseline']['p99_ms']:.1f} ms")
    for key in ("model_page", "pack_page"):
        x = p[key]
        print(
            f"(a) {key:10s} with {args.packs} packs: {x['rps']:8.0f} req/s  ratio {x['rps'] / base:.2f} "
            f"(goal >= 0.3)  p50 {x['p50_ms']:.1f} ms  p99 {x['p99_ms']:.1f} ms (goal < 50)  "
            f"rounds {x['rounds_rps']}  errors {x['errors']:.0f}"
        )
    e = bench_events(work, args.events)
    print(
        f"(b) event on the stream after the PUT's answer: median {e['median_after_answer_ms']:.1f} ms "
        f"(goal < 100), p90 {e['p90_after_answer_ms']:.1f} ms; after the PUT was sent: median "
        f"{e['median_after_send_ms']:.1f} ms, p90 {e['p90_after_send_ms']:.1f} ms ({e['events']} events)"
    )
    w = bench_webhook_work(work)
    print(
        f"(c) statements in one publish: {w['statements_without_endpoints']} without webhook endpoints, "
        f"{w['statements_with_5_endpoints']} with 5 (goal: equal)"
    )


if __name__ == "__main__":
    main()
