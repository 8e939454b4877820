"""The nodes page (health, free space, replicas by state) and one node's page, read through the replication
service as ``/v1/nodes`` reads them; a node's error text is shown as its code only (as the API shows it to
everyone but admins: it can quote what a node answered)."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from registry.api.nodes import replication
from registry.names import check_plain_name
from registry.replication.nodes import NodeOut, public_error
from registry.web.render import page, render
from registry.web.session import web_read_gate

routes = web.RouteTableDef()
EMBEDDED = "no IPFS node configured: the embedded blockstore is the one replica (target 1)"


def _public(n: NodeOut) -> NodeOut:
    return replace(n, last_error=public_error(n.last_error))


@routes.get("/ui/nodes")
@page
async def nodes_page(request: web.Request) -> web.Response:
    await web_read_gate(request)
    svc = replication(request)
    nodes = [_public(n) for n in await svc.nodes.list()]
    node_states, replica_states = await svc.counts()
    return render(
        request,
        "nodes.html",
        {
            "nav": "nodes",
            "nodes": nodes,
            "node_states": node_states,
            "replica_states": replica_states,
            "embedded": EMBEDDED if not node_states else None,
        },
    )


@routes.get("/ui/nodes/{name}")
@page
async def node_page(request: web.Request) -> web.Response:
    await web_read_gate(request)
    name = check_plain_name(request.match_info["name"], "node name")
    svc = replication(request)
    # the listing carries the replica counts; get() names an unknown node in its NotFound
    node = next((n for n in await svc.nodes.list() if n.name == name), None) or await svc.nodes.get(name)
    node = _public(node)
    return render(request, "node.html", {"nav": "nodes", "node": node})
