"""Audits (proof of retrievability): fetch random blocks of a replica from its node and re-hash them.

IPFS Cluster trusts `pin/ls`; a node can say `pinned` and still be unable to serve a block (a corrupt
or missing blockstore entry). Any sampled block that does not come back, or comes back with bytes that
hash to another CID, proves the replica lost. A node that cannot be reached at all is a health
problem, not a verdict on the replica: that error propagates.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from multiformats import CID

from pinner.cids import normalize_cid
from pinner.dagpb import DagPbError, decode_node
from pinner.ipfs.errors import BlockMismatchError, NodeError, NodeUnreachableError
from pinner.ipfs.http import verify_node_block
from pinner.ipfs.protocol import IpfsNode

DAG_PB = 0x70


@dataclass(frozen=True)
class AuditResult:
    cid: str
    node_url: str
    checked: tuple[str, ...]
    bad_block: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.bad_block is None


async def dag_block_cids(root: str, get_block: Callable[[str], Awaitable[bytes]]) -> list[str]:
    """Every block CID under `root`; only dag-pb nodes are read (raw leaves are named by their links)."""
    out: list[str] = []
    seen: set[str] = set()
    stack = [normalize_cid(root)]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        out.append(cid)
        if CID.decode(cid).codec.code != DAG_PB:
            continue
        try:
            node = decode_node(await get_block(cid))
        except DagPbError:
            continue
        stack.extend(normalize_cid(str(link.cid)) for link in node.links)
    return out


def sample_blocks(blocks: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """Up to `count` distinct blocks, uniformly at random (all of them when there are fewer)."""
    if len(blocks) <= count:
        return list(blocks)
    return rng.sample(list(blocks), count)


async def audit_replica(
    node: IpfsNode, cid: str, blocks: Sequence[str], *, sample: int, rng: random.Random
) -> AuditResult:
    """Fetch `sample` random blocks of `blocks` (the DAG of `cid`) from `node`, each re-hashed.

    Raises:
        NodeUnreachableError: the node is down; nothing is concluded about the replica.
    """
    picked = sample_blocks(blocks, sample, rng)
    checked: list[str] = []
    for block in picked:
        checked.append(block)
        try:
            data = await node.get_block(block)
            verify_node_block(block, data, node_url=node.url)  # never trust a client to have checked
        except NodeUnreachableError:
            raise
        except BlockMismatchError as exc:
            return AuditResult(cid, node.url, tuple(checked), block, f"wrong bytes for block {block}: {exc}")
        except NodeError as exc:
            return AuditResult(cid, node.url, tuple(checked), block, f"block {block} not served: {exc}")
    return AuditResult(cid, node.url, tuple(checked))
