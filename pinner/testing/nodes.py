"""In-memory fakes of the pin-backend seams: a Kubo-like node, one that also runs ``add``, an orchestrator.

They keep what the real backends promise (tests/pinner/ipfs runs them through the same contract tests)
and add knobs to misbehave: a node that is down, forgets pins or serves wrong bytes.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from multiformats import CID

from pinner.blockstore import FsBlockstore, FsBlockstoreConfig
from pinner.car import read_car
from pinner.cids import cid_str, normalize_cid
from pinner.dagpb import decode_node
from pinner.ipfs.errors import NodeError, NodeTimeoutError, NodeUnreachableError
from pinner.ipfs.protocol import BlockStat, NodeInfo, PinState, PinStatus, ProgressCallback
from pinner.unixfs.params import UnixfsParams


class FakeKuboNode:
    """Implements `IpfsNode`: blocks and recursive pins in dicts; knobs to misbehave."""

    def __init__(self, url: str = "http://127.0.0.1:1", *, free: int | None = 10**12) -> None:
        self._url = url
        self.blocks: dict[str, bytes] = {}
        self.pins: set[str] = set()
        self.free = free
        self.down = False
        self.forget_pins = False  # acknowledge imports without pinning (a lying node)
        self.serve_wrong = False  # return other bytes than asked for
        self.imports = 0
        self.pin_calls: list[tuple[str, tuple[str, ...]]] = []
        self.pin_checks = 0  # all_pinned calls
        self.active = 0
        self.max_active = 0
        self.peers: dict[str, FakeKuboNode] = {}  # origins this node can fetch from, by multiaddr

    @property
    def url(self) -> str:
        return self._url

    def _check(self) -> None:
        if self.down:
            raise NodeUnreachableError(f"{self._url} refused the connection", node_url=self._url)

    async def info(self) -> NodeInfo:
        self._check()
        port = self._url.rsplit(":", 1)[-1]
        addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWFake{port}"
        return NodeInfo(url=self._url, version="fake/0.1", peer_id=f"12D3KooWFake{port}", addresses=(addr,))

    async def free_space(self) -> int | None:
        self._check()
        return self.free

    async def import_car(self, car: AsyncIterable[bytes], *, pin_roots: bool = True) -> list[str]:
        self._check()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            body = b"".join([c async for c in car])
            await asyncio.sleep(0)
        finally:
            self.active -= 1
        roots, blocks = read_car(io.BytesIO(body))
        for cid, data in blocks:
            self.blocks[normalize_cid(cid_str(cid))] = data
        self.imports += 1
        names = [normalize_cid(cid_str(r)) for r in roots]
        if pin_roots and not self.forget_pins:
            self.pins.update(names)
        return names if pin_roots else []

    def holds_dag(self, root: str) -> bool:
        """Whether every block of the DAG under ``root`` is here (what a peer pinning from us would fetch)."""
        stack = [normalize_cid(root)]
        while stack:
            cid = stack.pop()
            if cid not in self.blocks:
                return False
            if CID.decode(cid).codec.code == 0x70:  # dag-pb: follow its links
                stack.extend(normalize_cid(str(link.cid)) for link in decode_node(self.blocks[cid]).links)
        return True

    async def pin(
        self,
        cid: str,
        *,
        name: str | None = None,
        origins: tuple[str, ...] = (),
        on_progress: ProgressCallback | None = None,
    ) -> PinStatus:
        self._check()
        cid = normalize_cid(cid)
        self.pin_calls.append((cid, origins))
        for addr in origins:
            peer = self.peers.get(addr)
            if peer is not None and not peer.down:
                self.blocks.update(peer.blocks)
        if not self.holds_dag(cid):
            raise NodeTimeoutError(f"pin of {cid} found no provider", node_url=self._url, cid=cid)
        self.pins.add(cid)
        return PinStatus(cid=cid, state=PinState.PINNED)

    async def pin_status(self, cid: str) -> PinStatus:
        self._check()
        cid = normalize_cid(cid)
        return PinStatus(cid=cid, state=PinState.PINNED if cid in self.pins else PinState.UNPINNED)

    async def all_pinned(self, cids: Sequence[str]) -> bool:
        self._check()
        self.pin_checks += 1
        return all(normalize_cid(c) in self.pins for c in cids)

    async def list_pins(self) -> AsyncIterator[str]:
        self._check()
        for cid in sorted(self.pins):
            yield cid

    async def unpin(self, cid: str) -> None:
        self._check()
        self.pins.discard(normalize_cid(cid))

    async def get_block(self, cid: str) -> bytes:
        self._check()
        data = self.blocks.get(normalize_cid(cid))
        if data is None:
            raise NodeTimeoutError(f"block {cid} not found", node_url=self._url, cid=cid)
        return data[::-1] + b"x" if self.serve_wrong else data

    async def stat_block(self, cid: str) -> BlockStat:
        return BlockStat(cid=cid, size=len(await self.get_block(cid)))

    async def put_ipns_record(self, name: str, record: bytes) -> None:
        raise NodeError("not supported", node_url=self._url)


class FakeOrchestrator:
    """A `PinBackend` only (like IPFS Cluster): pins what one of the origin fakes holds the whole DAG of."""

    def __init__(self, url: str = "http://127.0.0.1:2") -> None:
        self._url = url
        self.pins: set[str] = set()
        self.peers: dict[str, FakeKuboNode] = {}
        self.pin_calls: list[tuple[str, tuple[str, ...]]] = []

    @property
    def url(self) -> str:
        return self._url

    async def info(self) -> NodeInfo:
        return NodeInfo(url=self._url, version="cluster/fake")

    async def free_space(self) -> int | None:
        return None

    async def pin(
        self,
        cid: str,
        *,
        name: str | None = None,
        origins: tuple[str, ...] = (),
        on_progress: ProgressCallback | None = None,
    ) -> PinStatus:
        cid = normalize_cid(cid)
        self.pin_calls.append((cid, origins))
        holders = (self.peers[a] for a in origins if a in self.peers)
        if not any(not peer.down and peer.holds_dag(cid) for peer in holders):
            raise NodeTimeoutError(f"no origin holds {cid}", node_url=self._url, cid=cid)
        self.pins.add(cid)
        return PinStatus(cid=cid, state=PinState.PINNED)

    async def pin_status(self, cid: str) -> PinStatus:
        cid = normalize_cid(cid)
        return PinStatus(cid=cid, state=PinState.PINNED if cid in self.pins else PinState.UNPINNED)

    async def list_pins(self) -> AsyncIterator[str]:
        for cid in sorted(self.pins):
            yield cid

    async def unpin(self, cid: str) -> None:
        self.pins.discard(normalize_cid(cid))


@dataclass(frozen=True)
class Added:
    cid: str
    size: int
    name: str


class FakeAddingNode(FakeKuboNode):
    """A `FakeKuboNode` with Kubo's `add`: builds the UnixFS DAG of the bytes with the options given."""

    def __init__(
        self, workdir: Path, url: str = "http://127.0.0.1:5", *, chunk_override: int | None = None
    ) -> None:
        super().__init__(url)
        self._store = FsBlockstore(workdir, FsBlockstoreConfig(fsync=False))
        self.chunk_override = chunk_override  # build another DAG than asked (a node with other defaults)
        self.adds: list[tuple[str, bool]] = []

    async def add(
        self,
        body: AsyncIterable[bytes],
        *,
        filename: str = "file",
        cid_version: int = 1,
        raw_leaves: bool | None = None,
        chunker: str | None = None,
        pin: bool = True,
    ) -> Added:
        self._check()
        data = b"".join([c async for c in body])
        chunk = self.chunk_override or (int(chunker.split("-")[1]) if chunker else 262144)
        params = UnixfsParams(chunk_size=chunk, cid_version=cid_version, raw_leaves=raw_leaves)
        root = cid_str(self._store.ingest_file(io.BytesIO(data), params).cid)
        for block_cid, block in self._store.iter_dag_blocks(root):
            self.blocks[normalize_cid(str(block_cid))] = block
        cid = normalize_cid(root)
        if pin:
            self.pins.add(cid)
        self.adds.append((cid, pin))
        return Added(cid, len(data), filename)
