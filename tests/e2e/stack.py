"""The real stack for end-to-end tests: a ``modelpack serve`` process on SQLite or Postgres, three js-ipfs
peers registered as its nodes, and the ``modelpack`` CLI run as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ipfs_testnode.peers import IpfsPeer, free_ports

MODELPACK = str(Path(sys.executable).parent / "modelpack")
MiB = 1024 * 1024
# Enough for the tiny preset (0.4 MB) under the sandbox's 2 GiB runtime estimate; the small preset
# (15 MB) is over it, which is how the "too big for the budget" refusal is exercised.
VALIDATION_MEMORY = 2 * 1024 * MiB + 4 * MiB


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}


@dataclass
class Run:
    code: int
    out: str
    err: str


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    p = subprocess.run(
        [MODELPACK, *args], capture_output=True, text=True, env=env or clean_env(), timeout=timeout
    )
    return Run(p.returncode, p.stdout, p.stderr)


class Daemon:
    """One ``modelpack serve`` subprocess with quick timings; replication_min = max = 3 (one copy per peer)."""

    def __init__(
        self, data_dir: Path, db_url: str, log: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.extra_env = extra_env or {}
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir, self.db_url, self.log = data_dir, db_url, log
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return (
            clean_env()
            | {
                "MODELPACK_JOBS__LEASE_S": "10",
                "MODELPACK_JOBS__HEARTBEAT_S": "1",
                "MODELPACK_JOBS__POLL_INTERVAL_S": "0.1",
                "MODELPACK_JOBS__BACKOFF_BASE_S": "0.2",
                "MODELPACK_JOBS__BACKOFF_MAX_S": "1",
                "MODELPACK_JOBS__MAX_ATTEMPTS": "60",
                "MODELPACK_STORAGE__FSYNC": "false",
                "MODELPACK_REPLICATION__REPLICATION_MIN": "3",
                "MODELPACK_REPLICATION__REPLICATION_MAX": "3",
                "MODELPACK_REPLICATION__NODE_DOWN_GRACE_S": "0",
                "MODELPACK_REPLICATION__HEALTH_INTERVAL_S": "1",
                "MODELPACK_VALIDATION__MEMORY_BYTES": str(VALIDATION_MEMORY),
                "MODELPACK_CURATION__SWEEP_INTERVAL_S": "0.5",
                "MODELPACK_CURATION__RETRY_S": "0.3",
            }
            | self.extra_env
        )

    def start(self) -> None:
        cmd = [MODELPACK, "serve", "--data-dir", str(self.data_dir), "--database-url", self.db_url]
        cmd += ["--listen", f"127.0.0.1:{self.port}"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 60, "the daemon to get ready", self.tail)

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.tail()
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def token(self, publisher: str, *args: str) -> str:
        r = cli("token", "create", "--database-url", self.db_url, "--publisher", publisher, "--json", *args)
        assert r.code == 0, r.err
        return str(json.loads(r.out)["token"])

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def post(self, path: str, body: Any, token: str) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def add_peers(self, admin: str, peers: list[IpfsPeer]) -> None:
        for i, peer in enumerate(peers):
            status, body = self.post("/v1/nodes", {"name": f"peer{i}", "url": peer.api_url}, admin)
            assert status == 201 and body["state"] == "up", body

    def state(self, cid: str) -> dict[str, Any]:
        status, body = self.get(f"/v1/packs/{cid}/validation")
        assert status == 200, body
        return dict(body)

    def wait_state(self, cid: str, *states: str, timeout: float = 120) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal last
            last = self.state(cid)
            return last["state"] in states

        wait_until(
            reached, timeout, f"pack {cid} to become {'/'.join(states)}", lambda: f"{last}\n{self.tail()}"
        )
        return last


def user_envs(daemon: Daemon, admin: str) -> tuple[dict[str, str], dict[str, str]]:
    """The CLI environments of alice (a publisher in namespace acme) and of the admin."""
    alice = daemon.token("alice", "--namespace", "acme")
    base = clean_env() | {"MODELPACK_REGISTRY": daemon.url}
    return base | {"MODELPACK_TOKEN": alice}, base | {"MODELPACK_TOKEN": admin}


def trust_key(tmp: Path, publisher_env: dict[str, str], admin_env: dict[str, str]) -> Path:
    """A new key ``tmp/alice.key``, registered by the publisher and trusted by namespace acme's policy."""
    key = tmp / "alice.key"
    assert cli("keygen", str(key)).code == 0
    r = cli("key", "add", f"{key}.pub", "--json", env=publisher_env)
    assert r.code == 0, r.err
    key_id = json.loads(r.out)["key_id"]
    r = cli("policy", "set", "acme", "--key", key_id, "--reason", "release key", env=admin_env)
    assert r.code == 0, r.err
    return key


def wait_until(cond: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{detail()}")
        time.sleep(0.2)


def resolve_ipns(peer: IpfsPeer, peer_id: str) -> str | None:
    url = f"{peer.api_url}/api/v0/name/resolve?arg={peer_id}&timeout=5s"
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return str(json.loads(resp.read()).get("Path"))
    except (urllib.error.HTTPError, OSError):
        return None
