"""The OpenAPI 3.1 document at ``/openapi.json``: the route table below plus the pydantic models the handlers
serialize through. A test checks that this table and the app's router list the same routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from registry.api import gate as g
from registry.api import ipns_gateway as ipns
from registry.api import keys_api as kapi
from registry.api import nodes
from registry.api import schemas as s
from registry.manifest.names import NAME_PATTERN, TAG_PATTERN

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"
JSON = "application/json"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path | query | header
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    responses: dict[int, type[BaseModel] | str | None]  # model, raw media type, or no body
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | str | None = None
    auth: bool = False
    extra_errors: tuple[int, ...] = ()


NS = Param("namespace", "path", {"type": "string", "pattern": NAME_PATTERN}, required=True)
MODEL = Param("model", "path", {"type": "string", "pattern": NAME_PATTERN}, required=True)
TAG = Param("tag", "path", {"type": "string", "pattern": TAG_PATTERN}, required=True)
CID = Param("cid", "path", {"type": "string"}, "a CID (any multibase)", required=True)
CURSOR = Param("cursor", "query", {"type": "string"}, "next_cursor of the previous page")
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1}, "page size")
KEY_ID = Param("key_id", "path", {"type": "string"}, "ed25519:<sha256 hex of the raw key>", required=True)
NODE = Param("name", "path", {"type": "string", "pattern": NAME_PATTERN}, "node name", required=True)
ETAG_NONE = Param("If-None-Match", "header", {"type": "string"}, "an ETag you hold: 304 when unchanged")
READ_ERRORS = (400, 401, 404)

OPERATIONS: tuple[Op, ...] = (
    Op(
        "get",
        "/v1/blobs/{cid}",
        "getBlob",
        "Is a file with this UnixFS CID uploaded?",
        "blobs",
        {200: s.BlobOut},
        (CID,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "put",
        "/v1/blobs/{cid}",
        "putBlob",
        "Upload a shard's bytes (streamed; committed only if they match)",
        "blobs",
        {200: s.BlobOut, 201: s.BlobOut},
        (
            CID,
            Param("sha256", "query", {"type": "string"}, "expected sha256 (hex or sha256:hex)"),
            Param("profile", "query", {"type": "string"}, "UnixFS profile the CID was built with"),
        ),
        body="application/octet-stream",
        auth=True,
        extra_errors=(400, 401, 403, 413, 422),
    ),
    Op(
        "post",
        "/v1/models/{namespace}/{model}/packs",
        "publishPack",
        "Publish a manifest",
        "packs",
        {200: s.PublishOut, 201: s.PublishOut},
        (NS, MODEL),
        body=s.PublishIn,
        auth=True,
        extra_errors=(400, 401, 403, 409, 413, 422),
    ),
    Op(
        "get",
        "/v1/models/{namespace}/{model}/packs",
        "listPacks",
        "Versions of a model, newest first",
        "models",
        {200: s.PackPage},
        (NS, MODEL, CURSOR, LIMIT),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/models",
        "listModels",
        "Models by namespace and/or name prefix",
        "models",
        {200: s.ModelPage},
        (
            Param("namespace", "query", {"type": "string"}),
            Param("prefix", "query", {"type": "string"}),
            CURSOR,
            LIMIT,
        ),
        extra_errors=(400, 401),
    ),
    Op(
        "get",
        "/v1/packs/{cid}",
        "getPack",
        "Pack detail",
        "packs",
        {200: s.PackOut},
        (CID,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/packs/{cid}/manifest",
        "getManifest",
        "The exact canonical manifest bytes",
        "packs",
        {200: JSON, 304: None},
        (CID, ETAG_NONE),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/packs/{cid}/shards/{filename}",
        "getShard",
        "A shard's bytes, verified while streamed",
        "packs",
        {200: "application/octet-stream", 304: None},
        (CID, Param("filename", "path", {"type": "string"}, required=True), ETAG_NONE),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/models/{namespace}/{model}/pointers",
        "listPointers",
        "Pointers of a model",
        "pointers",
        {200: s.PointerList},
        (NS, MODEL),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/models/{namespace}/{model}/pointers/{tag}",
        "resolvePointer",
        "Resolve ns/model@tag",
        "pointers",
        {200: s.PointerOut},
        (NS, MODEL, TAG),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "put",
        "/v1/models/{namespace}/{model}/pointers/{tag}",
        "setPointer",
        "Move a pointer (CAS with If-Match)",
        "pointers",
        {200: s.PointerOut},
        (
            NS,
            MODEL,
            TAG,
            Param("If-Match", "header", {"type": "string"}, "the CID the pointer must hold now"),
            Param("If-None-Match", "header", {"type": "string"}, "'*': only create"),
        ),
        body=s.PointerIn,
        auth=True,
        extra_errors=(400, 401, 403, 404, 409, 412, 413),
    ),
    Op(
        "get",
        "/v1/models/{namespace}/{model}/pointers/{tag}/history",
        "pointerHistory",
        "History of one pointer",
        "pointers",
        {200: s.PointerHistoryPage},
        (NS, MODEL, TAG, CURSOR, LIMIT),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/models/{namespace}/{model}/history",
        "modelPointerHistory",
        "History of every pointer",
        "pointers",
        {200: s.PointerHistoryPage},
        (NS, MODEL, CURSOR, LIMIT),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "post",
        "/v1/tokens",
        "createToken",
        "Issue an API token (admin)",
        "auth",
        {201: s.TokenCreated},
        body=s.TokenIn,
        auth=True,
        extra_errors=(400, 401, 403, 413),
    ),
    Op(
        "get",
        "/v1/tokens",
        "listTokens",
        "Your tokens",
        "auth",
        {200: s.TokenList},
        auth=True,
        extra_errors=(401,),
    ),
    Op(
        "delete",
        "/v1/tokens/{token_id}",
        "revokeToken",
        "Revoke a token",
        "auth",
        {200: s.TokenOut},
        (Param("token_id", "path", {"type": "string"}, required=True),),
        auth=True,
        extra_errors=(401, 404),
    ),
    Op(
        "get",
        "/v1/whoami",
        "whoami",
        "Who the token belongs to",
        "auth",
        {200: s.WhoAmI},
        auth=True,
        extra_errors=(401,),
    ),
    # -- trust: keys, policy, pack verdict, IPNS (registry.api.keys_api, registry.api.ipns_gateway)
    Op(
        "post",
        "/v1/keys",
        "registerKey",
        "Register an Ed25519 public key for your publisher",
        "trust",
        {200: kapi.KeyOut, 201: kapi.KeyOut},
        body=kapi.KeyIn,
        auth=True,
        extra_errors=(400, 401, 403, 409, 413),
    ),
    Op(
        "get",
        "/v1/keys",
        "listKeys",
        "Registered signing keys",
        "trust",
        {200: kapi.KeyPage},
        (Param("publisher", "query", {"type": "string"}), CURSOR, LIMIT),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/keys/{key_id}",
        "getKey",
        "One signing key",
        "trust",
        {200: kapi.KeyOut},
        (KEY_ID,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "post",
        "/v1/keys/{key_id}/revoke",
        "revokeKey",
        "Revoke a key from a time (in the past: admin only)",
        "trust",
        {200: kapi.RevokeOut},
        (KEY_ID,),
        body=kapi.RevokeIn,
        auth=True,
        extra_errors=(400, 401, 403, 404, 409, 413),
    ),
    Op(
        "get",
        "/v1/namespaces/{namespace}/policy",
        "getTrustPolicy",
        "A namespace's trust policy",
        "trust",
        {200: kapi.PolicyOut},
        (NS,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "put",
        "/v1/namespaces/{namespace}/policy",
        "setTrustPolicy",
        "Replace a namespace's trust policy (audited)",
        "trust",
        {200: kapi.PolicyOut},
        (NS,),
        body=kapi.PolicyIn,
        auth=True,
        extra_errors=(400, 401, 403, 404, 413),
    ),
    Op(
        "get",
        "/v1/namespaces/{namespace}/policy/file",
        "getTrustPolicyFile",
        "The policy in the offline file format",
        "trust",
        {200: JSON},
        (NS,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/packs/{cid}/trust",
        "getPackTrust",
        "Signature verdicts and whether the namespace's policy is satisfied",
        "trust",
        {200: kapi.TrustOut},
        (CID,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/models/{namespace}/{model}/channels/{tag}",
        "getChannel",
        "The IPNS name and newest record of ns/model@tag",
        "ipns",
        {200: ipns.ChannelOut},
        (NS, MODEL, TAG),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/ipns/{name}",
        "getIpnsRecord",
        "A channel's signed IPNS record (Trustless Gateway)",
        "ipns",
        {200: ipns.IPNS_RECORD},
        (
            Param("name", "path", {"type": "string"}, "k51... or a base58 peer id", required=True),
            Param("format", "query", {"type": "string", "enum": ["ipns-record"]}),
            Param("Accept", "header", {"type": "string"}, f"{ipns.IPNS_RECORD} (or use ?format=ipns-record)"),
        ),
        extra_errors=(400, 401, 404, 406),
    ),
    Op(
        "post",
        "/v1/ipns/validate",
        "validateIpnsRecord",
        "Validate an IPNS record; refusals name the reason",
        "ipns",
        {200: ipns.RecordVerdictOut},
        (Param("name", "query", {"type": "string"}, "the record's IPNS name", required=True),),
        body="application/octet-stream",  # the record bytes (any content type is read)
        extra_errors=(400, 401, 409, 413),
    ),
    Op(
        "get",
        "/v1/nodes",
        "listNodes",
        "IPFS nodes and their health",
        "nodes",
        {200: nodes.NodeList},
        extra_errors=(401,),
    ),
    Op(
        "post",
        "/v1/nodes",
        "addNode",
        "Register an IPFS node (Kubo RPC, IPFS Cluster, Pinning Service)",
        "nodes",
        {201: nodes.NodeView},
        body=nodes.NodeIn,
        auth=True,
        extra_errors=(400, 401, 403, 409),
    ),
    Op(
        "get",
        "/v1/nodes/{name}",
        "getNode",
        "One IPFS node",
        "nodes",
        {200: nodes.NodeView},
        (NODE,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "post",
        "/v1/nodes/{name}/drain",
        "drainNode",
        "Move a node's replicas elsewhere, place nothing new",
        "nodes",
        {200: nodes.NodeView},
        (NODE,),
        body=nodes.DrainIn,
        auth=True,
        extra_errors=(400, 401, 403, 404),
    ),
    Op(
        "delete",
        "/v1/nodes/{name}",
        "removeNode",
        "Forget a node (409 while it holds pinned replicas)",
        "nodes",
        {200: nodes.RemovedOut},
        (NODE, Param("force", "query", {"type": "string", "enum": ["true", "false"]}, "drop its replicas")),
        auth=True,
        extra_errors=(400, 401, 403, 404, 409),
    ),
    Op(
        "get",
        "/v1/packs/{cid}/replicas",
        "packReplicas",
        "Replica matrix of a pack (units x nodes)",
        "nodes",
        {200: nodes.ReplicaMatrix},
        (CID,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "get",
        "/v1/replication/status",
        "replicationStatus",
        "Nodes and replicas by state",
        "nodes",
        {200: nodes.ReplicationStatus},
        extra_errors=(401,),
    ),
    Op(
        "post",
        "/v1/packs/{cid}/validate",
        "validatePack",
        "Enqueue a validation of the pack (member of its namespace, or admin)",
        "gate",
        {202: g.ValidationJobOut},
        (CID,),
        auth=True,
        extra_errors=(400, 401, 403, 404, 409),
    ),
    Op(
        "get",
        "/v1/packs/{cid}/validation",
        "getValidation",
        "The pack's state and its newest validation report",
        "gate",
        {200: g.ValidationStateOut},
        (CID,),
        extra_errors=READ_ERRORS,
    ),
    Op(
        "post",
        "/v1/packs/{cid}/curate",
        "curatePack",
        "Admin: point ns/model@curated at this validated, trusted, replicated pack (reason required)",
        "gate",
        {200: g.CurationOut},
        (CID,),
        body=g.ReasonIn,
        auth=True,
        extra_errors=(400, 401, 403, 404, 409),
    ),
    Op(
        "post",
        "/v1/packs/{cid}/uncurate",
        "uncuratePack",
        "Admin: withdraw a curated pack; the pointer rolls back (reason required)",
        "gate",
        {200: g.CurationOut},
        (CID,),
        body=g.ReasonIn,
        auth=True,
        extra_errors=(400, 401, 403, 404, 409),
    ),
    Op("get", "/metrics", "metrics", "Prometheus metrics", "health", {200: "text/plain"}),
    Op("get", "/healthz", "healthz", "Liveness", "health", {200: JSON}),
    Op("get", "/readyz", "readyz", "Readiness", "health", {200: JSON, 503: JSON}),
    Op("get", "/openapi.json", "openapi", "This document", "health", {200: JSON}),
)


def _models() -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = [s.ErrorBody]
    for op in OPERATIONS:
        for r in op.responses.values():
            if isinstance(r, type) and r not in out:
                out.append(r)
        if isinstance(op.body, type) and op.body not in out:
            out.append(op.body)
    return out


def _content(r: type[BaseModel] | str | None) -> dict[str, Any] | None:
    if r is None:
        return None
    if isinstance(r, str):
        return {r: {"schema": {}}}
    return {JSON: {"schema": {"$ref": REF.format(model=r.__name__)}}}


def build_document(server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every operation in ``OPERATIONS``."""
    inputs = {op.body for op in OPERATIONS if isinstance(op.body, type)}
    _, defs = models_json_schema(
        [(m, "validation" if m in inputs else "serialization") for m in _models()], ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        for status, r in op.responses.items():
            entry: dict[str, Any] = {
                "description": "OK" if status < 300 else "Not modified" if status == 304 else "Error"
            }
            content = _content(r)
            if content:
                entry["content"] = content
            responses[str(status)] = entry
        for status in op.extra_errors:
            responses.setdefault(str(status), {"description": "Error", "content": _content(s.ErrorBody)})
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": responses,
        }
        if op.params:
            item["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "schema": p.schema,
                }
                | ({"description": p.description} if p.description else {})
                for p in op.params
            ]
        if op.body is not None:
            item["requestBody"] = {"required": True, "content": _content(op.body)}
        if op.auth:
            item["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method] = item
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "modelpack registry", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_document())
