"""The node registry: IPFS nodes added by URL (Kubo RPC, IPFS Cluster, Pinning Service API), their
credentials sealed at rest, and their health (the clients that talk to them: `registry.replication.clients`).

URLs are checked against `replication.allowed_node_hosts` so the API cannot be turned into a way to
make the daemon call arbitrary hosts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.ipfs.errors import InvalidNodeUrlError, NodeError
from pinner.ipfs.http import BasicAuth, BearerAuth, NodeAuth, check_node_url
from pinner.ipfs.protocol import PinBackend
from pinner.states import ADDABLE_NODE_KINDS, NodeKind, NodeState, ReplicaState
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.models import IpfsNode, Replica
from registry.errors import BadRequest, Conflict, NotFound
from registry.names import check_name
from registry.trust.sealing import open_private_key, seal_private_key

log = logging.getLogger(__name__)

CREDENTIALS_AAD = b"modelpack node credentials"  # a sealed credential opens only as one
NODE_ERROR_MAX = 300  # characters of a node's last error kept (it may quote the node's answer)


def seal_auth(auth: NodeAuth | None, kek: bytes) -> bytes | None:
    if auth is None:
        return None
    doc = (
        {"type": "basic", "username": auth.username, "password": auth.password}
        if isinstance(auth, BasicAuth)
        else {"type": "bearer", "token": auth.token}
    )
    return seal_private_key(json.dumps(doc).encode(), kek, aad=CREDENTIALS_AAD)


def open_auth(sealed: bytes | None, kek: bytes) -> NodeAuth | None:
    if sealed is None:
        return None
    doc = json.loads(open_private_key(sealed, kek, aad=CREDENTIALS_AAD))
    if doc["type"] == "basic":
        return BasicAuth(doc["username"], doc["password"])
    return BearerAuth(doc["token"])


def parse_auth(data: Mapping[str, Any] | None) -> NodeAuth | None:
    """`{"type": "basic", "username", "password"}` or `{"type": "bearer", "token"}` (API and CLI form)."""
    if not data:
        return None
    kind = data.get("type")
    if kind == "basic" and isinstance(data.get("username"), str) and isinstance(data.get("password"), str):
        return BasicAuth(data["username"], data["password"])
    if kind == "bearer" and isinstance(data.get("token"), str) and data["token"]:
        return BearerAuth(data["token"])
    raise BadRequest("auth must be {type: basic, username, password} or {type: bearer, token}", field="auth")


@dataclass(frozen=True)
class NodeOut:
    """A node as the API and CLI show it."""

    name: str
    kind: str
    url: str
    state: str
    draining: bool
    tags: dict[str, str]
    version: str | None
    peer_id: str | None
    free_space: int | None
    last_seen_at: str | None
    down_since: str | None
    last_error: str | None
    replicas: dict[str, int] = field(default_factory=dict)  # replica state -> count

    @classmethod
    def of(cls, row: IpfsNode, replicas: dict[str, int]) -> NodeOut:
        return cls(
            name=row.name,
            kind=row.kind.value,
            url=row.url,
            state=row.state.value,
            draining=row.draining,
            tags=dict(row.tags or {}),
            version=row.version,
            peer_id=row.peer_id,
            free_space=row.free_space,
            last_seen_at=row.last_seen_at.isoformat() if row.last_seen_at else None,
            down_since=row.down_since.isoformat() if row.down_since else None,
            last_error=row.last_error,
            replicas=replicas,
        )


def check_allowed_url(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """The normalised URL; `BadRequest` for non-http(s) URLs or hosts the settings do not allow."""
    try:
        clean = check_node_url(url)
    except InvalidNodeUrlError as exc:
        raise BadRequest(
            exc.message, field="url", url=url[:200], **({"part": exc.part} if exc.part else {})
        ) from None
    host = (urlsplit(clean).hostname or "").lower()
    if "*" not in allowed_hosts and host not in {h.lower() for h in allowed_hosts}:
        raise BadRequest(
            f"node host {host!r} is not in replication.allowed_node_hosts ({', '.join(allowed_hosts)})",
            field="url",
            url=url[:200],
        )
    return clean


class NodeRegistry:
    """Add, list, drain and remove nodes; record health checks."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        kek: bytes,
        *,
        allowed_hosts: tuple[str, ...],
    ) -> None:
        self._sessions = sessions
        self._kek = kek
        self.allowed_hosts = allowed_hosts

    async def add(
        self,
        name: str,
        kind: str,
        url: str,
        *,
        auth: NodeAuth | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> NodeOut:
        check_name(name, "node name")
        if kind == NodeKind.EMBEDDED:
            raise BadRequest(
                "the embedded blockstore is always there; it is not added as a node", field="kind"
            )
        if kind not in ADDABLE_NODE_KINDS:
            raise BadRequest(
                f"node kind {kind!r} is not one of {', '.join(ADDABLE_NODE_KINDS)}", field="kind"
            )
        node_kind = NodeKind(kind)
        if node_kind is NodeKind.PINNING_SERVICE and not isinstance(auth, BearerAuth):
            raise BadRequest("a pinning service needs a bearer token (auth type bearer)", field="auth")
        clean = check_allowed_url(url, self.allowed_hosts)
        bad_tags = [
            k for k, v in (tags or {}).items() if not isinstance(v, str) or len(k) > 64 or len(v) > 128
        ]
        if bad_tags:
            raise BadRequest(f"tag {bad_tags[0]!r} must map a short name to a short string", field="tags")
        row = IpfsNode(
            name=name,
            kind=node_kind,
            url=clean,
            auth=seal_auth(auth, self._kek),
            tags=dict(tags or {}),
            state=NodeState.UNKNOWN,
            draining=False,
        )
        try:
            async with self._sessions() as s, s.begin():
                s.add(row)
        except IntegrityError:
            raise Conflict(
                f"a node named {name!r} or with URL {clean} is already registered", node=name
            ) from None
        return NodeOut.of(row, {})

    async def _get(self, s: AsyncSession, name: str) -> IpfsNode:
        row = (await s.execute(select(IpfsNode).where(IpfsNode.name == name))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no node named {name!r} is registered", node=name)
        return row

    async def list(self) -> list[NodeOut]:
        async with readonly_session(self._sessions) as s:
            rows = list((await s.execute(select(IpfsNode).order_by(IpfsNode.name))).scalars())
            counts = await s.execute(
                select(Replica.node_id, Replica.state, func.count()).group_by(Replica.node_id, Replica.state)
            )
            per: dict[int, dict[str, int]] = {}
            for node_id, state, n in counts:
                per.setdefault(node_id, {})[ReplicaState(state).value] = int(n)
        return [NodeOut.of(r, per.get(r.id, {})) for r in rows]

    async def get(self, name: str) -> NodeOut:
        async with readonly_session(self._sessions) as s:
            return NodeOut.of(await self._get(s, name), {})

    async def set_draining(self, name: str, draining: bool = True) -> NodeOut:
        async with self._sessions() as s, s.begin():
            row = await self._get(s, name)
            row.draining = draining
            return NodeOut.of(row, {})

    async def remove(self, name: str, *, force: bool = False) -> int:
        """Forget a node; refuses while it holds pinned replicas unless `force`. Returns replicas dropped."""
        async with self._sessions() as s, s.begin():
            row = await self._get(s, name)
            held = (
                await s.execute(
                    select(func.count()).where(
                        Replica.node_id == row.id, Replica.state == ReplicaState.PINNED
                    )
                )
            ).scalar_one()
            if held and not force:
                raise Conflict(
                    f"node {name!r} still holds {held} pinned replica(s): drain it first "
                    "(`modelpack node drain`), or remove it with --force",
                    node=name,
                )
            total = (await s.execute(select(func.count()).where(Replica.node_id == row.id))).scalar_one()
            await s.delete(row)
        return int(total)

    async def record_health(
        self,
        node_id: int,
        *,
        version: str | None,
        peer_id: str | None,
        free_space: int | None,
        error: str | None,
    ) -> tuple[NodeState, NodeState]:
        """Store one health check; returns (previous state, new state)."""
        now = utcnow()
        async with self._sessions() as s, s.begin():
            row = await s.get(IpfsNode, node_id)
            if row is None:
                return NodeState.UNKNOWN, NodeState.UNKNOWN
            before = row.state
            if error is None:
                row.state, row.down_since, row.last_error, row.last_seen_at = NodeState.UP, None, None, now
                row.version = (version or row.version or "")[:128] or None
                row.peer_id = (peer_id or row.peer_id or "")[:128] or None
                row.free_space = free_space
            else:
                row.state, row.last_error = NodeState.DOWN, bounded_error(error)
                row.down_since = row.down_since or now
            return before, row.state


def bounded_error(error: str) -> str:
    return error if len(error) <= NODE_ERROR_MAX else error[: NODE_ERROR_MAX - 3] + "..."


def public_error(error: str | None) -> str | None:
    """What anyone may see of a node's last error: its stable code only, never the node's own words."""
    if error is None:
        return None
    code, sep, _ = error.partition(": ")
    return code if sep and code.isidentifier() and code.islower() else "node_error"


async def check_health(
    backend_of: Callable[[IpfsNode], PinBackend], node: IpfsNode
) -> tuple[str | None, str | None, int | None, str | None]:
    """(version, peer id, free bytes, error) for one node; the error is None when it answered sanely."""
    try:
        backend = backend_of(node)
        info = await backend.info()
        free = await backend.free_space()
    except NodeError as exc:
        return None, None, None, f"{exc.code}: {exc.message}"
    return info.version, info.peer_id, free, None
