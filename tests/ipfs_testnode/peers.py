"""Real IPFS peers for tests: js-ipfs 0.66 daemons on 127.0.0.1, started, stopped and killed by PID.

js-ipfs serves the Kubo RPC API and runs offline (Kubo binaries cannot be fetched here). Each peer
owns a repo directory, four loopback ports and one process; nothing is bound outside 127.0.0.1 and
the bootstrap list is empty, so peers only know each other through explicit `swarm/connect`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
JSIPFS = HERE / "node_modules" / ".bin" / "jsipfs"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class TestnodeMissing(RuntimeError):
    """js-ipfs is not installed in tests/ipfs_testnode/node_modules."""


class PeerStartError(RuntimeError):
    """A js-ipfs daemon exited or did not answer in time; the message carries its log tail."""


def require_jsipfs() -> Path:
    if not JSIPFS.exists():
        raise TestnodeMissing(
            f"js-ipfs is not installed ({JSIPFS} is missing): run `make testnode` "
            "(npm install in tests/ipfs_testnode) before the ipfs tests"
        )
    return JSIPFS


@dataclass(frozen=True)
class PeerPorts:
    api: int
    gateway: int
    grpc: int
    swarm: int


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (all held open until all are chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def peer_ports_for(n: int) -> list[PeerPorts]:
    ports = free_ports(4 * n)
    return [PeerPorts(*ports[4 * i : 4 * i + 4]) for i in range(n)]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the test process dies (no orphans after kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class IpfsPeer:
    """One js-ipfs daemon with its own repo under `root/name`."""

    def __init__(self, root: Path, name: str, ports: PeerPorts) -> None:
        self.name = name
        self.ports = ports
        self.repo = root / name
        self._proc: subprocess.Popen[bytes] | None = None
        self._fresh = False
        self.peer_id: str | None = None

    # -- addresses ----------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def swarm_multiaddr(self) -> str:
        if self.peer_id is None:
            raise RuntimeError(f"peer {self.name} has not started")
        return f"/ip4/127.0.0.1/tcp/{self.ports.swarm}/p2p/{self.peer_id}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        return f"IpfsPeer({self.name}, api={self.api_url}, pid={self.pid})"

    # -- lifecycle ----------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        # NODE_ENV=test turns preload (requests to *.preload.ipfs.io) off
        return {**os.environ, "IPFS_PATH": str(self.repo), "NODE_ENV": "test"}

    def _init_config(self) -> Path:
        """The config a fresh repo starts from: loopback only, no bootstrap, no discovery, no NAT."""
        p = self.ports
        config = {
            "Addresses": {
                "API": f"/ip4/127.0.0.1/tcp/{p.api}",
                "Gateway": f"/ip4/127.0.0.1/tcp/{p.gateway}",
                "RPC": f"/ip4/127.0.0.1/tcp/{p.grpc}",
                "Swarm": [f"/ip4/127.0.0.1/tcp/{p.swarm}"],
                "Delegates": [],
            },
            "Bootstrap": [],
            "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
            "Swarm": {"DisableNatPortMap": True},
        }
        path = self.repo.parent / f"{self.name}.init-config.json"
        path.write_text(json.dumps(config, indent=1))
        return path

    def _clear_stale_lock(self) -> None:
        """After kill -9 the repo lock stays behind; only our own (now reaped) daemon can have held it."""
        lock = self.repo / "repo.lock"
        if lock.is_dir():
            shutil.rmtree(lock, ignore_errors=True)
        elif lock.exists():
            lock.unlink(missing_ok=True)

    def spawn(self) -> None:
        """Start the daemon without waiting for it (see `wait_ready`); a missing repo is created.

        The daemon initialises a fresh repo itself (`--init-config`), which saves a second node
        start per peer. Call from the thread that lives as long as the peer: the child's
        parent-death signal fires when the *thread* that forked it exits.
        """
        if self.running:
            return
        self.repo.parent.mkdir(parents=True, exist_ok=True)
        cmd = [str(require_jsipfs()), "daemon", "--enable-preload=false"]
        self._fresh = not (self.repo / "config").exists()
        if self._fresh:
            cmd += ["--init-config", str(self._init_config()), "--init-profile", "test"]
        else:
            self._clear_stale_lock()
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                cmd,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def _drop_init_docs(self) -> None:
        """A daemon-initialised repo pins js-ipfs's welcome docs; a test peer starts with no pins."""
        keys = self.rpc("pin/ls", type="recursive").get("Keys") or {}
        for cid in keys:
            self.rpc("pin/rm", arg=cid)
        self.rpc("repo/gc", expect_json=False)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise PeerStartError(f"js-ipfs peer {self.name} exited during start:\n{self.log_tail()}")
            try:
                self.peer_id = str(self.rpc("id", timeout=1.0)["ID"])
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                time.sleep(0.1)
                continue
            if self._fresh:
                self._drop_init_docs()
                self._fresh = False
            return
        self.kill()
        raise PeerStartError(f"js-ipfs peer {self.name} did not answer in {timeout}s:\n{self.log_tail()}")

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Graceful stop: `/api/v0/shutdown`, then SIGTERM, then SIGKILL by PID."""
        if self._proc is None:
            return
        if self.running:
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                self.rpc("shutdown", timeout=2.0, expect_json=False)
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and self.running:
                    with contextlib.suppress(ProcessLookupError):
                        self._proc.send_signal(sig)
                try:
                    self._proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """kill -9, as a crash would: no shutdown, the repo is left as it was."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()
        self._proc = None

    def restart(self, *, wipe: bool = False, timeout: float = START_TIMEOUT_S) -> None:
        """Stop and start again; `wipe=True` deletes the repo first (a new identity, no pins, no blocks)."""
        self.stop()
        if wipe:
            shutil.rmtree(self.repo, ignore_errors=True)
            self.peer_id = None
        self.start(timeout)

    # -- small synchronous RPC for the fixture itself -----------------------------------------
    def rpc(self, cmd: str, *, timeout: float = 10.0, expect_json: bool = True, **params: str) -> Any:
        query = "&".join(f"{k.replace('_', '-')}={urllib.parse.quote(v)}" for k, v in params.items())
        url = f"{self.api_url}/api/v0/{cmd}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if expect_json else body

    def connect(self, other: IpfsPeer) -> None:
        self.rpc("swarm/connect", arg=other.swarm_multiaddr)

    @property
    def log_path(self) -> Path:
        """Outside the repo, so it survives `restart(wipe=True)`."""
        return self.repo.parent / f"{self.name}.daemon.log"

    def log_tail(self, lines: int = 30) -> str:
        path = self.log_path
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_peers(root: Path, count: int, *, prefix: str = "peer") -> list[IpfsPeer]:
    """Start `count` peers in parallel on fresh loopback ports, connected to each other."""
    require_jsipfs()
    peers = [IpfsPeer(root, f"{prefix}{i}", ports) for i, ports in enumerate(peer_ports_for(count))]
    try:
        for peer in peers:
            peer.spawn()
        for peer in peers:
            peer.wait_ready()
        connect_all(peers)
    except BaseException:
        stop_peers(peers)
        raise
    return peers


def connect_all(peers: list[IpfsPeer]) -> None:
    for i, a in enumerate(peers):
        for b in peers[i + 1 :]:
            if a.running and b.running:
                a.connect(b)


def restore_peers(peers: list[IpfsPeer]) -> None:
    """Start again (keeping their repos) the peers a test stopped or killed, and reconnect the set.

    For tests on the shared session peers that kill one mid-way: call it in a `finally`.
    """
    for peer in peers:
        if not peer.running:
            peer.start()
    connect_all(peers)


def stop_peers(peers: list[IpfsPeer]) -> None:
    """Stop every peer; a failure to stop one never leaves the others running."""
    errors = []
    for peer in peers:
        try:
            peer.stop()
        except Exception as exc:  # keep going: orphans are worse than a noisy teardown
            errors.append(exc)
            peer.kill()
    if errors:
        raise errors[0]


@contextlib.contextmanager
def running_peers(root: Path, count: int, *, prefix: str = "peer") -> Iterator[list[IpfsPeer]]:
    peers = start_peers(root, count, prefix=prefix)
    try:
        yield peers
    finally:
        stop_peers(peers)
