"""Real `modelpack serve` processes replicating to real js-ipfs peers: a daemon killed with SIGKILL in the
middle of a push resumes after restart; two daemons on one Postgres split the work and lose nothing when
one of them is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pinner.cids import normalize_cid
from pinner.unixfs import UnixfsParams
from tests.ipfs_testnode.peers import IpfsPeer, free_ports
from tests.registry.api import helpers

MODELPACK = Path(sys.executable).parent / "modelpack"
KUBO = UnixfsParams(cid_version=1, raw_leaves=True)  # 256 KiB chunks, as `ipfs add --cid-version=1`
pytestmark = [pytest.mark.ipfs, pytest.mark.slow]


class Daemon:
    """One `modelpack serve` subprocess with quick job timings; its log is kept in a file."""

    def __init__(self, data_dir: Path, db_url: str, log: Path) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir, self.db_url, self.log = data_dir, db_url, log
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
        return env | {
            "MODELPACK_JOBS__LEASE_S": "3",
            "MODELPACK_JOBS__HEARTBEAT_S": "0.5",
            "MODELPACK_JOBS__POLL_INTERVAL_S": "0.1",
            "MODELPACK_JOBS__BACKOFF_BASE_S": "0.2",
            "MODELPACK_JOBS__BACKOFF_MAX_S": "1",
            "MODELPACK_JOBS__MAX_ATTEMPTS": "30",
            "MODELPACK_STORAGE__FSYNC": "false",
            "MODELPACK_REPLICATION__NODE_DOWN_GRACE_S": "0",
            "MODELPACK_REPLICATION__HEALTH_INTERVAL_S": "1",
            "MODELPACK_VALIDATION__AUTO_VALIDATE": "false",
        }

    def start(self) -> None:
        cmd = [str(MODELPACK), "serve", "--data-dir", str(self.data_dir), "--database-url", self.db_url]
        cmd += ["--listen", f"127.0.0.1:{self.port}"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"daemon did not get ready:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


def token(db_url: str, *args: str) -> str:
    out = subprocess.run(
        [str(MODELPACK), "token", "create", "--database-url", db_url, "--json", *args],
        capture_output=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")},
    )
    return str(json.loads(out.stdout)["token"])


def publish(url: str, tok: str, model: str, shards: list[tuple[str, bytes]]) -> str:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {tok}"
    for _, data in shards:
        assert s.put(f"{url}/v1/blobs/{helpers.cid_of(data, KUBO)}", data=data).status_code in (200, 201)
    # A manifest publishes only as the model it names.
    body = {"manifest": {**manifest_for(shards), "model_name": model}}
    r = s.post(f"{url}/v1/models/acme/{model}/packs", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["cid"])


def manifest_for(shards: list[tuple[str, bytes]]) -> dict[str, Any]:
    doc = helpers.manifest(shards)
    for entry, (_name, data) in zip(doc["shards"], shards, strict=True):
        entry["cid"] = helpers.cid_of(data, KUBO)
    return doc


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def rows(db_url: str, sql: str) -> list[Any]:
    """Read the daemon's index from the test (a separate connection, as an operator would)."""

    async def go() -> list[Any]:
        eng = create_async_engine(db_url)
        try:
            async with eng.connect() as c:
                return list(await c.execute(text(sql)))
        finally:
            await eng.dispose()

    return asyncio.run(go())


def unfinished(db_url: str, kind: str) -> list[Any]:
    """Jobs of ``kind`` still queued or running (a dead worker's job is running until its lease expires)."""
    return rows(
        db_url, f"SELECT id, state FROM jobs WHERE kind = '{kind}' AND state IN ('queued', 'running')"
    )


def peer_pins(peer: IpfsPeer) -> set[str]:
    return {normalize_cid(k) for k in (peer.rpc("pin/ls", type="recursive").get("Keys") or {})}


def replicated(url: str, cid: str, want: int) -> bool:
    m = requests.get(f"{url}/v1/packs/{cid}/replicas", timeout=5).json()
    return bool(m["satisfied"]) and all(u["pinned"] >= want for u in m["units"])


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for d in made:
        d.stop()


def add_peers(url: str, admin: str, peers: list[IpfsPeer]) -> None:
    for i, peer in enumerate(peers):
        r = requests.post(
            f"{url}/v1/nodes",
            json={"name": f"peer{i}", "url": peer.api_url},
            headers=helpers.bearer(admin),
        )
        assert r.status_code == 201 and r.json()["state"] == "up", r.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_daemon_killed_mid_replication_resumes_and_nothing_is_duplicated(
    db_url: str, tmp_path: Path, ipfs_peers: list[IpfsPeer], daemons: list[Daemon]
) -> None:
    d = Daemon(tmp_path / "data", db_url, tmp_path / "daemon.log")
    daemons.append(d)
    d.start()
    admin = token(db_url, "--publisher", "root", "--scope", "admin")
    alice = token(db_url, "--publisher", "alice", "--namespace", "acme")
    add_peers(d.url, admin, ipfs_peers)
    shards = [(f"model-{i:05d}-of-00004.safetensors", os.urandom(6_000_000)) for i in range(4)]
    cid = publish(d.url, alice, "big", shards)
    wait_until(
        lambda: bool(rows(db_url, "SELECT 1 FROM replicas WHERE state = 'pinning'")), 120, "a push to start"
    )
    d.kill9()
    mid = rows(db_url, "SELECT state, count(*) FROM replicas GROUP BY state")
    assert dict(mid).get("pinned", 0) < 5 * 3, f"replication finished before the kill: {mid}"
    d.start()
    wait_until(lambda: replicated(d.url, cid, 3), 240, "the pack on all three peers after the restart")
    units = {normalize_cid(r[0]) for r in rows(db_url, f"SELECT cid FROM shards WHERE pack_cid = '{cid}'")}
    units.add(cid)
    for peer in ipfs_peers:
        assert units <= peer_pins(peer)
    reps = rows(db_url, "SELECT cid, node_id, state, bytes_moved FROM replicas")
    assert len(reps) == len(units) * 3 and {r[2] for r in reps} == {"pinned"}
    assert len({(r[0], r[1]) for r in reps}) == len(reps)  # one row per (unit, node)
    total = sum(len(data) for _, data in shards)
    assert sum(r[3] for r in reps) <= 3 * total * 1.05  # no unit was sent twice to a node
    jobs = rows(db_url, f"SELECT state FROM jobs WHERE kind = 'replicate' AND payload LIKE '%{cid}%'")
    assert "dead" not in {j[0] for j in jobs}


def min_pinned(url: str, cid: str) -> int:
    m = requests.get(f"{url}/v1/packs/{cid}/replicas", timeout=5).json()
    return min(u["pinned"] for u in m["units"])


def pushes(log: Path) -> list[str]:
    """Packs this daemon pushed bytes of (its `replicate ...: pushed to [nodes]` lines)."""
    return [
        line.split("replicate ")[1].split(":")[0]
        for line in log.read_text().splitlines()
        if "modelpack.replication replicate " in line and "pushed to []" not in line
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_daemons_on_one_postgres_split_the_work_and_survive_a_kill(
    db_url: str, tmp_path: Path, ipfs_peers: list[IpfsPeer], daemons: list[Daemon]
) -> None:
    a = Daemon(tmp_path / "a", db_url, tmp_path / "a.log")
    b = Daemon(tmp_path / "b", db_url, tmp_path / "b.log")
    daemons += [a, b]
    a.start()
    b.start()
    admin = token(db_url, "--publisher", "root", "--scope", "admin")
    alice = token(db_url, "--publisher", "alice", "--namespace", "acme")
    add_peers(a.url, admin, ipfs_peers)
    # Each daemon keeps the bytes uploaded to it; a job the other one claims pins from the nodes instead.
    packs = [
        publish(d.url, alice, f"m{i}", [(f"model-{i:05d}.safetensors", os.urandom(1_000_000))])
        for i, d in enumerate([a, b] * 4)
    ]
    wait_until(lambda: all(min_pinned(a.url, c) >= 1 for c in packs), 240, "a first copy of every pack")
    b.kill9()
    wait_until(lambda: all(replicated(a.url, c, 3) for c in packs), 240, "every pack on all three peers")
    assert pushes(a.log) and pushes(b.log)  # both daemons moved bytes
    reps = rows(db_url, "SELECT cid, node_id, state FROM replicas")
    assert len(reps) == len(packs) * 2 * 3 and {r[2] for r in reps} == {"pinned"}
    assert len({(r[0], r[1]) for r in reps}) == len(reps)
    for peer in ipfs_peers:
        assert {normalize_cid(r[0]) for r in reps} <= peer_pins(peer)
    # A replicate job the killed daemon held stays `running` until its lease expires; then the
    # survivor claims it and finishes it.
    wait_until(
        lambda: not unfinished(db_url, "replicate"), 120, "the killed daemon's replicate jobs to be finished"
    )
    jobs = dict(rows(db_url, "SELECT state, count(*) FROM jobs WHERE kind = 'replicate' GROUP BY state"))
    assert jobs.get("dead", 0) == 0 and jobs.get("succeeded", 0) >= len(packs)
