"""Where shard bytes come from when the blockstore lacks them: the registry's Kubo nodes that are up.

Shared by publish-by-CID (the ``fetch`` job) and the validation gate. The clients come from the one
node-client factory, so a node registered with credentials is read with them. Nothing here trusts a
node: every caller re-hashes what it streams against the shard's CID and sha256 before keeping it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.states import NodeKind, NodeState
from registry.db.models import IpfsNode
from registry.replication.clients import ClientFactory


class ShardSource(Protocol):
    def cat(self, cid: str) -> AsyncIterator[bytes]: ...


class ShardFetcher(Protocol):
    """Streams a UnixFS file's bytes from somewhere other than the blockstore (an IPFS node)."""

    def sources(self) -> AsyncIterator[tuple[str, ShardSource]]: ...


class NodeDirectory(Protocol):
    """Whether any node could serve shard bytes (publish refuses missing shards when none could)."""

    async def has_sources(self, session: AsyncSession) -> bool: ...


_USABLE = (
    select(IpfsNode)
    .where(IpfsNode.kind == NodeKind.KUBO, IpfsNode.state != NodeState.DOWN)
    .order_by(IpfsNode.id)
)


class NodeShardFetcher:
    """Reads shards from the registry's Kubo nodes that are up (the replication service's node table)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clients: ClientFactory) -> None:
        self._sessions = sessions
        self.clients = clients

    async def has_sources(self, session: AsyncSession) -> bool:
        count = await session.execute(select(func.count()).select_from(_USABLE.subquery()))
        return bool(count.scalar_one())

    async def sources(self) -> AsyncIterator[tuple[str, ShardSource]]:
        async with self._sessions() as s:
            rows = list((await s.execute(_USABLE)).scalars())
        for row in rows:
            client = self.clients.kubo(row)
            if client is not None:
                yield row.name, client
