"""IPFS nodes and replication over HTTP: register/drain/remove nodes (admin), list them, a pack's replica matrix
(shards x nodes) and the replication status the CLI's `modelpack status` shows.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pinner.cids import cid_str, parse_cid
from pinner.states import ADDABLE_NODE_KINDS
from registry.api import formats
from registry.api.auth import read_gate, require_principal
from registry.api.endpoint import CID, READ_ERRORS, Param, endpoint, read_body
from registry.api.keys import REPLICATION
from registry.errors import BadRequest, Forbidden, NotFound, Unauthorized
from registry.replication.nodes import NodeOut, bounded_error, parse_auth, public_error
from registry.replication.service import ReplicationService
from registry.replication.summary import ReplicationSummary

routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)
BODY_MAX = 64 * 1024
NODE = Param("name", "path", {"type": "string", "pattern": formats.PLAIN_NAME}, "node name", required=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class NodeAuthIn(_In):
    type: Literal["basic", "bearer"]
    username: str | None = Field(None, max_length=256)
    password: str | None = Field(None, max_length=1024)
    token: str | None = Field(None, max_length=4096)


class NodeIn(_In):
    name: str = Field(
        max_length=64,
        description="lowercase letters, digits, '.', '_', '-'",
        json_schema_extra={"pattern": formats.PLAIN_NAME},
    )
    kind: str = Field("kubo", json_schema_extra={"enum": list(ADDABLE_NODE_KINDS)})
    url: str = Field(max_length=1024, description="http(s) URL of the node's API (Kubo: without /api/v0)")
    auth: NodeAuthIn | None = None
    tags: dict[str, str] = Field(default_factory=dict, max_length=32, description='e.g. {"zone": "eu-1"}')

    @field_validator("kind")
    @classmethod
    def _addable_kind(cls, kind: str) -> str:
        if kind not in ADDABLE_NODE_KINDS:
            raise ValueError(f"node kind {kind!r} is not one of {', '.join(ADDABLE_NODE_KINDS)}")
        return kind


class DrainIn(_In):
    draining: bool = True


class NodeView(_Out):
    name: str
    kind: str
    url: str
    state: str = Field(description="up | down | unknown (not checked yet)")
    draining: bool
    tags: dict[str, str]
    version: str | None = None
    peer_id: str | None = None
    free_space: int | None = None
    last_seen_at: str | None = None
    down_since: str | None = None
    last_error: str | None = Field(
        None,
        description="why the last check failed: the node's own words (bounded) for admins, "
        "only the error code (e.g. node_unreachable) for everyone else",
    )
    replicas: dict[str, int] = Field(default_factory=dict, description="replica state -> count")


class NodeList(_Out):
    nodes: list[NodeView]


class RemovedOut(_Out):
    name: str
    replicas_dropped: int


class UnitReplicas(_Out):
    cid: str
    kind: str = Field(description="shard | file | manifest")
    name: str
    size: int
    pinned: int
    min: int
    max: int
    satisfied: bool
    replicas: dict[str, str] = Field(description="node name -> replica state")


class ReplicaMatrix(_Out):
    pack: str
    satisfied: bool = Field(description="every unit meets replication_min (pack-atomic)")
    embedded_only: bool = Field(description="no IPFS node configured: the blockstore is the one replica")
    nodes: list[str]
    units: list[UnitReplicas]


class ReplicationStatus(_Out):
    embedded_only: bool
    message: str
    nodes: dict[str, int] = Field(description="node state -> count")
    replicas: dict[str, int] = Field(description="replica state -> count")


def replication(request: web.Request) -> ReplicationService:
    return request.app[REPLICATION]


async def _require_admin(request: web.Request) -> None:
    (await require_principal(request)).require_global_admin("managing IPFS nodes")


async def _body(request: web.Request, model: type[M], what: str) -> M:
    return await read_body(request, model, what)


async def _sees_node_errors(request: web.Request) -> bool:
    """Whether the caller may read nodes' error texts (they can quote what a node answered): admins only."""
    try:
        await _require_admin(request)
    except (Unauthorized, Forbidden):
        return False
    return True


def _view(n: NodeOut, *, admin: bool = True) -> NodeView:
    view = NodeView.model_validate(n, from_attributes=True)
    error = (bounded_error(n.last_error) if n.last_error else None) if admin else public_error(n.last_error)
    return view.model_copy(update={"last_error": error})


def matrix(summary: ReplicationSummary) -> ReplicaMatrix:
    return ReplicaMatrix(
        pack=summary.pack_cid,
        satisfied=summary.satisfied,
        embedded_only=summary.embedded_only,
        nodes=list(summary.nodes),
        units=[
            UnitReplicas(
                cid=u.unit.cid,
                kind=u.unit.kind,
                name=u.unit.name,
                size=u.unit.size,
                pinned=u.pinned,
                min=u.target.min,
                max=u.target.max,
                satisfied=u.satisfied,
                replicas=u.replicas,
            )
            for u in summary.units
        ],
    )


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


@routes.get("/v1/nodes")
@endpoint("IPFS nodes and their health", tag="nodes", responses={200: NodeList}, errors=(401,))
async def list_nodes(request: web.Request) -> web.Response:
    await read_gate(request)
    admin = await _sees_node_errors(request)
    return _json(NodeList(nodes=[_view(n, admin=admin) for n in await replication(request).nodes.list()]))


@routes.post("/v1/nodes")
@endpoint(
    "Register an IPFS node (Kubo RPC, IPFS Cluster, Pinning Service)",
    tag="nodes",
    responses={201: NodeView},
    body=NodeIn,
    body_max=BODY_MAX,
    auth=True,
    errors=(400, 401, 403, 409, 413),
)
async def add_node(request: web.Request) -> web.Response:
    """Register a node; it is health-checked at once and used for placement once up."""
    await _require_admin(request)
    body = await _body(request, NodeIn, "node")
    svc = replication(request)
    auth = parse_auth(body.auth.model_dump(exclude_none=True) if body.auth else None)
    await svc.nodes.add(body.name, body.kind, body.url, auth=auth, tags=body.tags)
    await svc.check_nodes()
    return _json(_view(await svc.nodes.get(body.name)), status=201)


@routes.get("/v1/nodes/{name}")
@endpoint("One IPFS node", tag="nodes", responses={200: NodeView}, params=(NODE,), errors=READ_ERRORS)
async def get_node(request: web.Request) -> web.Response:
    await read_gate(request)
    admin = await _sees_node_errors(request)
    return _json(_view(await replication(request).nodes.get(request.match_info["name"]), admin=admin))


@routes.post("/v1/nodes/{name}/drain")
@endpoint(
    "Move a node's replicas elsewhere, place nothing new",
    tag="nodes",
    responses={200: NodeView},
    params=(NODE,),
    body=DrainIn,
    body_max=BODY_MAX,
    auth=True,
    errors=(400, 401, 403, 404, 413),
)
async def drain_node(request: web.Request) -> web.Response:
    """Stop placing on the node and move its replicas elsewhere (`{"draining": false}` undoes it)."""
    await _require_admin(request)
    body = await _body(request, DrainIn, "drain")
    svc = replication(request)
    out = await svc.nodes.set_draining(request.match_info["name"], body.draining)
    await svc.request_reconcile()
    return _json(_view(out))


@routes.delete("/v1/nodes/{name}")
@endpoint(
    "Forget a node (409 while it holds pinned replicas)",
    tag="nodes",
    responses={200: RemovedOut},
    params=(NODE, Param("force", "query", {"enum": ["true", "false"]}, "drop its replicas")),
    auth=True,
    errors=(400, 401, 403, 404, 409),
)
async def remove_node(request: web.Request) -> web.Response:
    """Forget a node; refused (409) while it still holds pinned replicas unless `force=true`."""
    await _require_admin(request)
    force = request.query.get("force", "false").lower()
    if force not in ("true", "false"):
        raise BadRequest("force must be true or false", field="force")
    svc = replication(request)
    name = request.match_info["name"]
    dropped = await svc.nodes.remove(name, force=force == "true")
    await svc.request_reconcile()
    return _json(RemovedOut(name=name, replicas_dropped=dropped))


@routes.get("/v1/packs/{cid}/replicas")
@endpoint(
    "Replica matrix of a pack (units x nodes)",
    tag="nodes",
    responses={200: ReplicaMatrix},
    params=(CID,),
    errors=READ_ERRORS,
)
async def pack_replicas(request: web.Request) -> web.Response:
    """The replica matrix of a pack: every unit (shards and manifest) by node, with its target."""
    await read_gate(request)
    text = request.match_info["cid"]
    try:
        cid = cid_str(parse_cid(text))
    except Exception:
        raise BadRequest(f"{text!r} is not a CID", cid=text) from None
    try:
        summary = await replication(request).pack_replication(cid)
    except LookupError:
        raise NotFound(f"no pack {cid} is published here", cid=cid) from None
    return _json(matrix(summary))


@routes.get("/v1/replication/status")
@endpoint("Nodes and replicas by state", tag="nodes", responses={200: ReplicationStatus}, errors=(401,))
async def replication_status(request: web.Request) -> web.Response:
    await read_gate(request)
    svc = replication(request)
    nodes, replicas = await svc.counts()
    embedded = not nodes
    message = (
        "no IPFS node configured: the embedded blockstore is the one replica (target 1)"
        if embedded
        else f"{sum(nodes.values())} node(s) registered"
    )
    return _json(ReplicationStatus(embedded_only=embedded, message=message, nodes=nodes, replicas=replicas))
