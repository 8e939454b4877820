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
from typing import Any, ClassVar
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
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
from registry.events import store as events
from registry.names import check_plain_name
from registry.trust.errors import KeySealError
from registry.trust.sealing import open_private_key, seal_private_key

log = logging.getLogger(__name__)

LEGACY_CREDENTIALS_AAD = b"modelpack node credentials"  # before #12: bound to the purpose, not the node
NODE_ERROR_MAX = 300  # characters of a node's last error kept (it may quote the node's answer)


class NodeCredentialsError(NodeError):
    """A node's stored credentials do not open for that node: sealed for another node row or URL (copied
    or edited in the database), or under another key-encryption key."""

    code: ClassVar[str] = "node_credentials_unreadable"
    http_status: ClassVar[int] = 500


def credentials_aad(node_id: int, url: str) -> bytes:
    """What a node's sealed credentials are bound to: the purpose, the row's id and its URL, so a sealed
    credential copied onto another row, or left on a row whose URL changed, does not open (a URL change
    re-seals with ``seal_auth``)."""
    return LEGACY_CREDENTIALS_AAD + b"\x00" + str(node_id).encode() + b"\x00" + url.encode()


def _auth_doc(auth: NodeAuth) -> bytes:
    doc = (
        {"type": "basic", "username": auth.username, "password": auth.password}
        if isinstance(auth, BasicAuth)
        else {"type": "bearer", "token": auth.token}
    )
    return json.dumps(doc).encode()


def _auth_of(plain: bytes) -> NodeAuth:
    doc = json.loads(plain)
    if doc["type"] == "basic":
        return BasicAuth(doc["username"], doc["password"])
    return BearerAuth(doc["token"])


def seal_auth(auth: NodeAuth | None, kek: bytes, *, node_id: int, url: str) -> bytes | None:
    """The credentials sealed under ``kek`` for the node row ``node_id`` at ``url``."""
    if auth is None:
        return None
    return seal_private_key(_auth_doc(auth), kek, aad=credentials_aad(node_id, url))


def open_auth(node: IpfsNode, kek: bytes) -> NodeAuth | None:
    """The node's credentials; NodeCredentialsError when they were not sealed for this row and URL."""
    if node.auth is None:
        return None
    try:
        return _auth_of(open_private_key(node.auth, kek, aad=credentials_aad(node.id, node.url)))
    except KeySealError:
        raise NodeCredentialsError(
            f"the credentials stored for node {node.name!r} (id {node.id}, {node.url[:200]}) do not open for "
            "it: they were sealed for another node or URL, or under another key-encryption key; remove the "
            "node and add it again with its credentials",
            node_url=node.url[:200],
        ) from None


async def reseal_legacy_credentials(sessions: async_sessionmaker[AsyncSession], kek: bytes) -> int:
    """Re-seals credentials sealed before they were bound to their node (``LEGACY_CREDENTIALS_AAD``) for
    the row they are on now; run at startup. Rows that open neither way are left alone (their node's
    requests fail with NodeCredentialsError). Returns how many rows were re-sealed."""
    async with readonly_session(sessions) as s:
        rows = (
            await s.execute(
                select(IpfsNode.id, IpfsNode.url, IpfsNode.auth).where(IpfsNode.auth.is_not(None))
            )
        ).all()
    resealed = 0
    for node_id, url, sealed in rows:
        if sealed is None:  # cleared since the read
            continue
        try:
            open_private_key(sealed, kek, aad=credentials_aad(node_id, url))
            continue  # already bound
        except KeySealError:
            pass
        try:
            plain = open_private_key(sealed, kek, aad=LEGACY_CREDENTIALS_AAD)
        except KeySealError:
            log.warning("node id %d: its sealed credentials do not open; requests to it will fail", node_id)
            continue
        new = seal_private_key(plain, kek, aad=credentials_aad(node_id, url))
        async with sessions() as s, s.begin():
            done = await s.execute(
                update(IpfsNode)
                .where(IpfsNode.id == node_id, IpfsNode.url == url, IpfsNode.auth == sealed)
                .values(auth=new)
            )
            resealed += done.rowcount or 0  # type: ignore[attr-defined]
    if resealed:
        log.info("re-sealed %d node credential(s) bound to their node", resealed)
    return resealed


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
        check_plain_name(name, "node name")
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
            auth=None,
            tags=dict(tags or {}),
            state=NodeState.UNKNOWN,
            draining=False,
        )
        try:
            async with self._sessions() as s, s.begin():
                s.add(row)
                await s.flush()  # the row's id, which its sealed credentials are bound to
                row.auth = seal_auth(auth, self._kek, node_id=row.id, url=clean)
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
                if free_space is not None:  # unknown this round: the last measurement stands
                    row.free_space = free_space
            else:
                row.state, row.last_error = NodeState.DOWN, bounded_error(error)
                row.down_since = row.down_since or now
            if row.state is not before:
                await events.record(
                    s,
                    "node.up" if row.state is NodeState.UP else "node.down",
                    payload={"node": row.name, "from": before.value, "error": public_error(row.last_error)},
                )
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
    """(version, peer id, free bytes, error) for one node; the error is None when it answered sanely.

    Liveness is the node's identity call. Its free space (``repo/stat``, which walks the repository and is
    slow on a busy node taking a large push) is a measurement, not a heartbeat: when it fails the node stays
    up with its free space unknown.
    """
    try:
        backend = backend_of(node)
        info = await backend.info()
    except NodeError as exc:
        return None, None, None, f"{exc.code}: {exc.message}"
    try:
        free = await backend.free_space()
    except NodeError as exc:
        log.info("node %s: free space unknown this round (%s: %s)", node.name, exc.code, exc.message)
        free = None
    return info.version, info.peer_id, free, None
