"""Our nodes' dialable multiaddrs (the PSA's `delegates`), asked of the up nodes at most once per TTL."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.ipfs.errors import NodeError
from pinner.states import NodeKind, NodeState
from registry.db.engine import readonly_session
from registry.db.models import IpfsNode
from registry.replication.clients import BackendFactory
from registry.replication.summary import all_nodes


class NodeAddresses:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], backends: BackendFactory, ttl_s: float = 30.0
    ) -> None:
        self._sessions = sessions
        self._backends = backends
        self._ttl_s = ttl_s
        self._cached: tuple[float, dict[int, tuple[str, ...]]] | None = None
        self._lock = asyncio.Lock()

    async def _ask(self, node: IpfsNode) -> tuple[str, ...]:
        try:
            info = await asyncio.wait_for(self._backends.backend(node).info(), 5.0)
        except (NodeError, TimeoutError):
            return ()
        return tuple(a for a in info.addresses if "/p2p/" in a)

    async def by_node(self) -> dict[int, tuple[str, ...]]:
        """Node id -> its multiaddrs with a peer id, for every up node that can hold blocks."""
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self._ttl_s:
                return self._cached[1]
            async with readonly_session(self._sessions) as s:
                nodes = [n for n in await all_nodes(s) if n.kind is NodeKind.KUBO and n.state is NodeState.UP]
            found = await asyncio.gather(*(self._ask(n) for n in nodes))
            out = {n.id: addrs for n, addrs in zip(nodes, found, strict=True) if addrs}
            self._cached = (time.monotonic(), out)
            return out

    async def delegates(self, holders: set[int] | None = None, limit: int = 20) -> list[str]:
        """Addresses of the nodes in ``holders`` (all up nodes when none of them has any), at most ``limit``."""
        return pick_delegates(await self.by_node(), holders, limit)

    def forget(self) -> None:
        self._cached = None


def pick_delegates(known: dict[int, tuple[str, ...]], holders: set[int] | None, limit: int) -> list[str]:
    """From ``known`` (node id -> addresses): the holders' addresses, else every node's, at most ``limit``."""
    picked = [a for nid, addrs in known.items() if holders and nid in holders for a in addrs]
    if not picked:
        picked = [a for addrs in known.values() for a in addrs]
    return list(dict.fromkeys(picked))[:limit]
