"""The one node-client factory: a registered node's row -> the client that talks to it.

Every part of the daemon that calls a registered node gets its client here: the replication service
(push, pin, audit, reconcile, health), fetch-by-CID and the gate (shard bytes from Kubo nodes) and IPNS
publishing (record puts to Kubo nodes). Clients share one aiohttp session, carry the node's sealed
credentials (opened with the KEK) and the ``replication.*`` budgets, and are cached per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp

from pinner.ipfs.cluster import ClusterClient, ClusterConfig
from pinner.ipfs.http import BearerAuth, HttpTimeouts
from pinner.ipfs.kubo import KuboClient, KuboConfig
from pinner.ipfs.pinning_service import PinningServiceClient, PinningServiceConfig
from pinner.ipfs.protocol import PinBackend
from pinner.states import NodeKind
from registry.db.models import IpfsNode
from registry.errors import BadRequest
from registry.replication.nodes import open_auth


@dataclass(frozen=True)
class NodeClientConfig:
    """Budgets for the clients built for registered nodes (from `replication.*` settings)."""

    request_timeout_s: float = 30.0
    pin_timeout_s: float = 600.0
    poll_interval_s: float = 2.0
    replication_min: int | None = None  # asked of an IPFS Cluster
    replication_max: int | None = None
    connect_timeout_s: float = 5.0
    max_json_bytes: int = 16 * 1024 * 1024
    max_block_bytes: int = 4 * 1024 * 1024  # largest block read from a Kubo node
    stream_chunk_bytes: int = 256 * 1024
    page_size: int = 1000  # pinning service list pages

    def timeouts(self) -> HttpTimeouts:
        # A node answers dag/import only once it has stored every block: the per-read bound must cover
        # that silence, so it is the pin budget; whole small calls stay bounded by the request timeout.
        return HttpTimeouts(
            connect=self.connect_timeout_s,
            call=self.request_timeout_s,
            read=max(self.request_timeout_s, self.pin_timeout_s),
            max_json_bytes=self.max_json_bytes,
        )

    def kubo(self) -> KuboConfig:
        """The config of a Kubo RPC client (replication, the gate's shard reads, IPNS record puts)."""
        return KuboConfig(
            timeouts=self.timeouts(),
            node_timeout=self.request_timeout_s,
            pin_no_progress_timeout=self.pin_timeout_s,
            max_block_size=self.max_block_bytes,
            stream_chunk_size=self.stream_chunk_bytes,
        )


class BackendFactory(Protocol):
    """Gives the client for a registered node (tests substitute fakes)."""

    def backend(self, node: IpfsNode) -> PinBackend: ...


class ClientFactory:
    """Builds one client per node (cached by id and URL) on a shared aiohttp session, with its credentials.

    The session belongs to the caller (the composition root), which closes it after the last job.
    """

    def __init__(self, session: aiohttp.ClientSession, kek: bytes, config: NodeClientConfig) -> None:
        self._session = session
        self._kek = kek
        self.config = config
        self._cache: dict[tuple[int, str], PinBackend] = {}

    def backend(self, node: IpfsNode) -> PinBackend:
        key = (node.id, node.url)
        found = self._cache.get(key)
        if found is not None:
            return found
        c = self.config
        timeouts = c.timeouts()
        auth = open_auth(node, self._kek)  # NodeCredentialsError (a NodeError) unless sealed for this node
        made: PinBackend
        if node.kind is NodeKind.KUBO:
            made = KuboClient(
                node.url,
                session=self._session,
                auth=auth,
                config=c.kubo(),
            )
        elif node.kind is NodeKind.CLUSTER:
            made = ClusterClient(
                node.url,
                session=self._session,
                auth=auth,
                config=ClusterConfig(
                    timeouts=timeouts,
                    replication_min=c.replication_min,
                    replication_max=c.replication_max,
                    poll_interval=c.poll_interval_s,
                    pin_no_progress_timeout=c.pin_timeout_s,
                ),
            )
        elif node.kind is NodeKind.PINNING_SERVICE:
            token = auth.token if isinstance(auth, BearerAuth) else ""
            made = PinningServiceClient(
                node.url,
                token,
                session=self._session,
                config=PinningServiceConfig(
                    timeouts=timeouts,
                    poll_interval=c.poll_interval_s,
                    pin_no_progress_timeout=c.pin_timeout_s,
                    page_size=c.page_size,
                ),
            )
        else:
            raise BadRequest(f"node {node.name} is of kind {node.kind}, which has no client", node=node.name)
        self._cache[key] = made
        return made

    def kubo(self, node: IpfsNode) -> KuboClient | None:
        """The Kubo RPC client of a Kubo node (shard reads, IPNS record puts); None for other kinds."""
        if node.kind is not NodeKind.KUBO:
            return None
        client = self.backend(node)
        assert isinstance(client, KuboClient)
        return client
