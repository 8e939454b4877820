"""Loads the js-ipfs peers plugin for these tests unless tests/conftest.py already registered it."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from multiformats import CID, multihash

from pinner.car import write_car
from pinner.dagpb import PBLink, encode_node
from pinner.unixfs.format import encode_data

PLUGIN = "tests.ipfs_testnode.plugin"
ROOT = Path(__file__).resolve().parents[3]


def pytest_configure(config: pytest.Config) -> None:
    if str(ROOT) not in sys.path:  # `tests` is importable only from the repo root
        sys.path.insert(0, str(ROOT))
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)


@dataclass(frozen=True)
class SmallDag:
    """A two-leaf UnixFS file DAG (dag-pb root, raw leaves) and its CARv1 bytes, built by hand."""

    root: str
    content: bytes
    blocks: dict[str, bytes]
    car: bytes


def make_small_dag(seed: bytes) -> SmallDag:
    leaves = [seed * 40, seed[::-1] * 25]
    leaf_cids = [CID("base32", 1, "raw", multihash.digest(leaf, "sha2-256")) for leaf in leaves]
    root_block = encode_node(
        [PBLink(bytes(c), "", len(leaf)) for c, leaf in zip(leaf_cids, leaves, strict=True)],
        encode_data(2, filesize=sum(map(len, leaves)), blocksizes=[len(leaf) for leaf in leaves]),
    )
    root = CID("base32", 1, "dag-pb", multihash.digest(root_block, "sha2-256"))
    blocks = {str(root): root_block} | {str(c): leaf for c, leaf in zip(leaf_cids, leaves, strict=True)}
    car = b"".join(write_car([root], [(CID.decode(k), v) for k, v in blocks.items()]))
    return SmallDag(str(root), b"".join(leaves), blocks, car)


@pytest.fixture
def small_dag(request: pytest.FixtureRequest) -> SmallDag:
    """A DAG unique to the test (so tests sharing the session peers never see each other's pins)."""
    return make_small_dag(request.node.nodeid.encode() + os.urandom(8))


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
def dag_factory() -> Callable[[bytes], SmallDag]:
    return make_small_dag
