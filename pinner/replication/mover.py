"""Moving a unit's bytes onto a node: our blocks as one CAR into `dag/import` (or, cheaper, `add` of a
file whose DAG the node rebuilds exactly, see `adder`), or a pin fetched from peers.

A CAR keeps our CIDs whatever the node's chunker would pick, and one streamed request carries every
unit a node needs from a pack. When our blockstore lacks the bytes (they live only on other nodes), or
the node is an orchestrator (IPFS Cluster, a pinning service) that fetches by itself, we ask it to pin
with the holders' multiaddrs as origins. Either way success means the node *says* the CID is pinned
afterwards; audits check that it can also serve it. Pushes are idempotent: a CID already pinned on
the node is confirmed, not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from multiformats import CID

from pinner.car import write_car
from pinner.cids import normalize_cid
from pinner.errors import PinnerError
from pinner.ipfs.errors import NodeError, NotPinnedError
from pinner.ipfs.protocol import IpfsNode, PinBackend, PinState
from pinner.replication.adder import FileAdder, FileBytes, add_params, add_unpinned


class BlockSource(Protocol):
    """Where a unit's blocks come from (the embedded blockstore, plus the manifest bytes in memory)."""

    def has(self, cid: str) -> bool: ...

    def iter_dag_blocks(self, root: str) -> Iterator[tuple[CID | bytes, bytes]]: ...


@dataclass(frozen=True)
class MoverConfig:
    per_node_concurrency: int = 2  # pushes to one node at a time, across every job in this process
    car_batch_bytes: int = 1024 * 1024  # read this much CAR per hop to the thread pool
    prefer_add: bool = True  # `add` a file when the node would rebuild our exact DAG (cheaper than a CAR)
    add_min_bytes: int = 4 * 1024 * 1024  # smaller files ride in the one CAR (fewer round trips)

    def __post_init__(self) -> None:
        if self.per_node_concurrency < 1 or self.car_batch_bytes < 1:
            raise ValueError("per_node_concurrency and car_batch_bytes must be positive")


@dataclass(frozen=True)
class PushResult:
    node_url: str
    pinned: tuple[str, ...]  # normalised CIDs the node confirms pinned
    bytes_moved: int  # CAR bytes sent (0 when the node fetched them itself or had them)
    method: str  # "car", "pin" or "already"


class NodeLimiter:
    """One semaphore per node URL: at most `limit` concurrent pushes to a node."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._sems: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def slot(self, node_url: str) -> AsyncIterator[None]:
        sem = self._sems.setdefault(node_url, asyncio.Semaphore(self._limit))
        async with sem:
            yield


def _take(blocks: Iterator[bytes], limit: int) -> bytes:
    out = bytearray()
    for piece in blocks:
        out += piece
        if len(out) >= limit:
            break
    return bytes(out)


def _unique_blocks(source: BlockSource, roots: Sequence[str]) -> Iterator[tuple[CID | bytes, bytes]]:
    """Every block under `roots` once: shards of one pack may share blocks (same bytes, same leaves)."""
    seen: set[bytes] = set()
    for root in roots:
        for cid, data in source.iter_dag_blocks(root):
            key = bytes(cid) if isinstance(cid, CID) else cid
            if key not in seen:
                seen.add(key)
                yield cid, data


async def car_stream(
    source: BlockSource,
    roots: Sequence[str],
    *,
    batch_bytes: int,
    counter: list[int],
    failures: list[PinnerError] | None = None,
) -> AsyncIterator[bytes]:
    """A CARv1 of `roots` read from `source` in a worker thread, batch by batch (memory stays flat)."""
    pieces = write_car([CID.decode(r) for r in roots], _unique_blocks(source, roots))
    while True:
        try:
            batch = await asyncio.to_thread(_take, pieces, batch_bytes)
        except PinnerError as exc:  # our own store failed: the HTTP client would disguise it as a node error
            if failures is not None:
                failures.append(exc)
            raise
        if not batch:
            return
        counter[0] += len(batch)
        yield batch


class Mover:
    """Pushes units to nodes, limited per node."""

    def __init__(self, source: BlockSource, config: MoverConfig = MoverConfig()) -> None:
        self._source = source
        self.config = config
        self.limiter = NodeLimiter(config.per_node_concurrency)

    async def _pinned(self, node: PinBackend, cids: Sequence[str]) -> set[str]:
        out = set()
        for cid in cids:
            if (await node.pin_status(cid)).state is PinState.PINNED:
                out.add(normalize_cid(cid))
        return out

    async def _add_files(
        self, node: IpfsNode, cids: Sequence[str], source: BlockSource, name: str | None
    ) -> tuple[int, set[str]]:
        """`add` the units whose DAG the node rebuilds exactly; returns (bytes sent, CIDs pinned)."""
        if not (self.config.prefer_add and isinstance(node, FileAdder) and isinstance(source, FileBytes)):
            return 0, set()
        sent, done = 0, set()
        for cid in cids:
            if await asyncio.to_thread(source.file_size, cid) < self.config.add_min_bytes:
                continue
            params = await asyncio.to_thread(add_params, cid, source.get_block)
            if params is None:
                continue
            built, n = await add_unpinned(node, source, cid, params)
            sent += n
            if built:  # the node has exactly our blocks: pinning them is local work
                await node.pin(cid, name=name)
                done.add(cid)
        return sent, done

    async def push(
        self,
        node: PinBackend,
        cids: Sequence[str],
        *,
        origins: tuple[str, ...] = (),
        name: str | None = None,
        source: BlockSource | None = None,
    ) -> PushResult:
        """Make `node` pin every CID in `cids`; raises a `NodeError` subclass when it does not.

        `origins` are multiaddrs of peers that hold the blocks (used when we cannot send them);
        `source` replaces the mover's block source for this push (e.g. with a manifest block added).
        """
        source = source or self._source
        wanted = [normalize_cid(c) for c in cids]
        async with self.limiter.slot(node.url):
            already = await self._pinned(node, wanted)
            missing = [c for c in wanted if c not in already]
            if not missing:
                return PushResult(node.url, tuple(wanted), 0, "already")
            local = all(source.has(c) for c in missing)
            if isinstance(node, IpfsNode) and local:
                moved, by_add = await self._add_files(node, missing, source, name)
                rest = [c for c in missing if c not in by_add]
                if rest:
                    counter: list[int] = [0]
                    failures: list[PinnerError] = []
                    stream = car_stream(
                        source,
                        rest,
                        batch_bytes=self.config.car_batch_bytes,
                        counter=counter,
                        failures=failures,
                    )
                    try:
                        await node.import_car(stream, pin_roots=True)
                    except NodeError:
                        if failures:  # the CAR broke on our side, not the node's
                            raise failures[0] from None
                        raise
                    moved += counter[0]
                method = "car" if not by_add else "add" if not rest else "add+car"
            else:
                for cid in missing:
                    await node.pin(cid, name=name, origins=origins)
                moved, method = 0, "pin"
            # one `pin/ls` for them all when the node can answer so (the usual case: every one pinned)
            if isinstance(node, IpfsNode) and await node.all_pinned(missing):
                confirmed = set(missing)
            else:
                confirmed = await self._pinned(node, missing)
        lacking = [c for c in missing if c not in confirmed]
        if lacking:
            raise NotPinnedError(
                f"{node.url} does not report {lacking[0]} pinned after the {method}",
                node_url=node.url,
                cid=lacking[0],
            )
        return PushResult(node.url, tuple(wanted), moved, method)
