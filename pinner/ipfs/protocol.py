"""What the replication service needs from a place that keeps pins: the pin-backend seam and its results.

Three implementations: `kubo.KuboClient` (an IPFS node's RPC API: everything), `cluster.ClusterClient`
and `pinning_service.PinningServiceClient` (pin orchestrators: `PinBackend` only; they fetch the bytes
themselves from the peers they are told about).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class PinState(enum.StrEnum):
    """A CID's state as the remote side reports it (IPFS Cluster and Pinning Service API vocabulary)."""

    QUEUED = "queued"
    PINNING = "pinning"
    PINNED = "pinned"
    FAILED = "failed"
    UNPINNED = "unpinned"


@dataclass(frozen=True)
class NodeInfo:
    """Who answered a health check: identity, software version, addresses peers can dial."""

    url: str
    version: str
    peer_id: str | None = None
    agent: str | None = None
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepoStat:
    """Space use of a node's repo; `free_bytes` is what placement spreads by."""

    repo_size: int
    storage_max: int
    num_objects: int

    @property
    def free_bytes(self) -> int:
        return max(self.storage_max - self.repo_size, 0)


@dataclass(frozen=True)
class PinStatus:
    """One CID's pin state on a backend. `peers` maps each cluster peer (or delegate) to its own state."""

    cid: str
    state: PinState
    error: str | None = None
    request_id: str | None = None
    peers: Mapping[str, PinState] = field(default_factory=dict)
    delegates: tuple[str, ...] = ()  # multiaddrs a pinning service asks the block holder to connect to

    @property
    def replicas(self) -> int:
        """How many peers report the CID pinned (1 for a single node that pins it)."""
        if self.peers:
            return sum(1 for s in self.peers.values() if s is PinState.PINNED)
        return 1 if self.state is PinState.PINNED else 0


@dataclass(frozen=True)
class BlockStat:
    cid: str
    size: int


ProgressCallback = Callable[[int], None]
"""Called with the number of blocks fetched so far while a pin progresses."""


@runtime_checkable
class PinBackend(Protocol):
    """Anything that can be asked to keep a CID: a Kubo node, an IPFS Cluster, a remote pinning service."""

    @property
    def url(self) -> str: ...

    async def info(self) -> NodeInfo:
        """Health check: raises a `NodeError` subclass when the backend is not usable."""
        ...

    async def free_space(self) -> int | None:
        """Bytes the backend can still take, or None when it does not say."""
        ...

    async def pin(
        self,
        cid: str,
        *,
        name: str | None = None,
        origins: tuple[str, ...] = (),
        on_progress: ProgressCallback | None = None,
    ) -> PinStatus:
        """Pin `cid` and return once it is pinned; `PinStalledError` when no progress is made in time.

        `origins` are multiaddrs of peers known to have the blocks (connected to first).
        """
        ...

    async def pin_status(self, cid: str) -> PinStatus:
        """Current state; `PinState.UNPINNED` when the backend does not know the CID."""
        ...

    def list_pins(self) -> AsyncIterable[str]:
        """Every CID the backend pins (recursively), normalised."""
        ...

    async def unpin(self, cid: str) -> None:
        """Remove the pin; succeeds when it was not pinned."""
        ...


@runtime_checkable
class IpfsNode(PinBackend, Protocol):
    """A node we can talk blocks with (Kubo RPC): push CARs, read and check blocks, publish IPNS."""

    async def import_car(self, car: AsyncIterable[bytes], *, pin_roots: bool = True) -> list[str]:
        """Stream a CAR into the node; returns the roots it pinned (normalised; none unless `pin_roots`)."""
        ...

    async def all_pinned(self, cids: Sequence[str]) -> bool:
        """Whether the node pins every one of `cids` recursively, asked in one call (`pin/ls` with an `arg`
        each); False as soon as one is not, without saying which."""
        ...

    async def get_block(self, cid: str) -> bytes:
        """The block's bytes, re-hashed against `cid` (`BlockMismatchError` when they differ)."""
        ...

    async def stat_block(self, cid: str) -> BlockStat: ...

    async def put_ipns_record(self, name: str, record: bytes) -> None:
        """Publish a signed IPNS record under `/ipns/<name>` to the node's routing."""
        ...
