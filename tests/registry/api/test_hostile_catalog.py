"""The hostile-input catalog (issue 12): each request below, sent to a live app on SQLite and on Postgres, gets the
4xx and stable error ``code`` listed, never a 500; every answer is under 4 KiB whatever the input's size, and no
row is written. ``(http)`` marks input refused by the HTTP parser itself (request line or header over its limit):
a bounded plain-text 4xx, before any handler runs.

=============================  ======  =======================  =============================================
case                           status  code                     request
=============================  ======  =======================  =============================================
body_3mb_json                  413     payload_too_large        POST /v1/tokens, a 3 MB JSON body
publish_over_byte_limit        413     payload_too_large        POST publish, a body over manifest+slack bytes
publish_deep_json              422     invalid_manifest         POST publish, arrays nested 100,000 deep
tokens_deep_json               400     bad_request              POST /v1/tokens, arrays nested 5,000 deep
publish_duplicate_keys         422     invalid_manifest         POST publish, "manifest" twice
publish_int_5000_digits        422     invalid_manifest         POST publish, model_version: 9…9 (5,000)
tokens_int_5000_digits         400     bad_request              POST /v1/tokens, namespaces: [9…9 (5,000)]
publish_nan                    422     invalid_manifest         POST publish, model_version: NaN
pointer_nan                    400     bad_request              PUT pointer, {"cid": NaN}
model_name_8k_in_path          400     invalid_name             GET /v1/models/acme/<8,000 chars>/packs
model_name_1mb_in_path         4xx     (http)                   GET /v1/models/acme/<1 MB>/packs
tag_8k_in_path                 400     invalid_name             PUT /v1/models/acme/tiny/pointers/<8,000>
namespace_8k_in_query          400     invalid_name             GET /v1/models?namespace=<8,000>
prefix_1mb_in_query            4xx     (http)                   GET /v1/models?prefix=<1 MB>
pointer_reason_1mb             413     payload_too_large        PUT pointer, reason of 1 MB
revoke_reason_1mb              413     payload_too_large        POST /v1/keys/{id}/revoke, reason of 1 MB
revoke_reason_2k               400     bad_request              POST /v1/keys/{id}/revoke, reason of 2,000
publish_reason_1mb             400     bad_request              POST publish, reason of 1 MB
key_id_8k_in_path              400/404 bad_request/not_found    GET /v1/keys/ed25519:<8,000>
revoke_key_id_8k_in_path       400/404 bad_request/not_found    POST /v1/keys/ed25519:<8,000>/revoke
key_id_1mb_in_path             4xx     (http)                   GET /v1/keys/<1 MB>
invalid_cid_pack               400     invalid_cid              GET /v1/packs/not-a-cid
invalid_cid_8k_pack            400     invalid_cid              GET /v1/packs/b<8,000>
invalid_cid_ipfs               400     invalid_cid              GET /ipfs/not-a-cid
invalid_cid_blob_put           400     invalid_cid              PUT /v1/blobs/not-a-cid
invalid_cid_pointer_body       400     invalid_cid              PUT pointer, {"cid": "not-a-cid"}
limit_5000_digits              400     bad_request              GET /v1/models?limit=9…9 (5,000)
limit_20_digits                400     bad_request              GET /v1/models?limit=9…9 (20)
cursor_not_base64              400     bad_request              GET /v1/models?cursor=%%%
cursor_too_long                400     bad_request              GET /v1/models?cursor=<4,000 chars>
cursor_huge_int_tokens         400     bad_request              GET /v1/tokens?cursor=b64([10**40])
cursor_huge_int_history        400     bad_request              GET pointer history?cursor=b64([10**40])
range_30_digits_start          400     bad_request              GET /ipfs/{cid}, Range: bytes=<30 digits>-
range_30_digits_end            400     bad_request              GET /ipfs/{cid}, Range: bytes=0-<30 digits>
manifest_json_shard            422     invalid_manifest         POST publish, a shard named manifest.json
model_name_other_namespace     422     model_name_mismatch      POST acme/tiny, model_name "beta/tiny"
bearer_1mb                     4xx     (http)                   GET /v1/whoami, a 1 MB bearer token
bearer_8k                      401     unauthorized             GET /v1/whoami, an 8,000-char bearer token
no_namespace_token_publishes   403     forbidden                POST publish with namespaces: [] token
small_order_key_challenge      400     bad_public_key           POST /v1/key-challenges, identity point
small_order_key_register       400     bad_public_key           POST /v1/keys, identity point
node_url_with_userinfo         400     bad_request              POST /v1/nodes (admin), http://u:p@host
publish_float_overflow         422     invalid_manifest         POST publish, model_version: 1e999999
publish_invalid_utf8           422     invalid_manifest         POST publish, bytes FF FE
publish_body_not_object        400     bad_request              POST publish, []
publish_tag_8k                 400     bad_request              POST publish, tag of 8,000 chars
if_match_8k                    400     invalid_cid              PUT pointer, If-Match of 8,000 chars
ipns_name_8k                   400     bad_ipns_name            GET /ipns/k51<8,000>
shard_filename_8k              404     not_found                GET /v1/packs/{cid}/shards/<8,000>
token_unknown_scope            400     bad_request              POST /v1/tokens (admin), scopes: ["root"]
no_namespace_token_uploads     403     upload_needs_namespace   PUT /v1/blobs/{cid} with namespaces: [] token
node_url_with_query            400     bad_request              POST /v1/nodes (admin), http://host/?x=1#f
node_name_1mb                  413     payload_too_large        POST /v1/nodes (admin), name of 1 MB
=============================  ======  =======================  =============================================
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select

from registry.api.keys import SESSIONS
from registry.db.models import (
    ApiToken,
    IpfsNode,
    Namespace,
    NamespaceMember,
    Publisher,
    Signature,
    SigningKey,
    TrustedKey,
)
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

MAX_ANSWER = 4096
MB = 1024 * 1024
DIGITS = "9" * 5000
SHARDS = [("model.safetensors", helpers.shard_bytes(2048, 7))]
BLOB = helpers.shard_bytes(1000, 3)
BLOB_CID = helpers.cid_of(BLOB)
KEY_ID = "ed25519:" + "ab" * 16
IDENTITY = base64.b64encode(bytes([1]) + bytes(31)).decode()
HUGE_CURSOR = base64.urlsafe_b64encode(json.dumps([10**40]).encode()).decode().rstrip("=")


def deep(n: int) -> str:
    return "[" * n + "]" * n


def manifest_raw(**extra: Any) -> dict[str, Any]:
    return helpers.manifest(SHARDS, **extra)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int | tuple[int, ...]
    code: str | tuple[str, ...] | None  # None: refused by the HTTP parser (no JSON envelope)
    token: str | None = "alice"  # "alice", "admin", "nobody" (namespaces: []), None, or a literal value
    body: Callable[[], bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    setup: str | None = None  # "blob": BLOB uploaded; "shards": SHARDS uploaded; "pack": acme/tiny published


def js(obj: Any) -> Callable[[], bytes]:
    return lambda: json.dumps(obj).encode()


def raw(text: Callable[[], str]) -> Callable[[], bytes]:
    return lambda: text().encode()


PUBLISH = "/v1/models/acme/tiny/packs"
POINTER = "/v1/models/acme/tiny/pointers/prod"
HTTP = (400, 413, 414, 431)

CATALOG: dict[str, Case] = {
    "body_3mb_json": Case("POST", "/v1/tokens", 413, "payload_too_large", "admin",
                          js({"publisher": "x", "description": "d" * 3 * MB})),
    "publish_over_byte_limit": Case("POST", PUBLISH, 413, "payload_too_large",
                                    body=js({"manifest": manifest_raw(pad="p" * 3 * MB)})),
    "publish_deep_json": Case("POST", PUBLISH, 422, "invalid_manifest",
                              body=raw(lambda: '{"manifest": ' + deep(100_000) + "}")),
    "tokens_deep_json": Case("POST", "/v1/tokens", 400, "bad_request", "admin",
                             raw(lambda: '{"publisher": ' + deep(5_000) + "}")),
    "publish_duplicate_keys": Case("POST", PUBLISH, 422, "invalid_manifest",
                                   body=raw(lambda: '{"manifest": {}, "manifest": {}}')),
    "publish_int_5000_digits": Case("POST", PUBLISH, 422, "invalid_manifest",
                                    body=raw(lambda: '{"manifest": {"model_version": ' + DIGITS + "}}")),
    "tokens_int_5000_digits": Case("POST", "/v1/tokens", 400, "bad_request", "admin",
                                   raw(lambda: '{"publisher": "x", "namespaces": [' + DIGITS + "]}")),
    "publish_nan": Case("POST", PUBLISH, 422, "invalid_manifest",
                        body=raw(lambda: '{"manifest": {"model_version": NaN}}')),
    "pointer_nan": Case("PUT", POINTER, 400, "bad_request", body=raw(lambda: '{"cid": NaN}')),
    "model_name_8k_in_path": Case("GET", "/v1/models/acme/" + "m" * 8000 + "/packs", 400, "invalid_name"),
    "model_name_1mb_in_path": Case("GET", "/v1/models/acme/" + "m" * MB + "/packs", HTTP, None),
    "tag_8k_in_path": Case("PUT", "/v1/models/acme/tiny/pointers/" + "t" * 8000, 400, "invalid_name",
                           body=js({"cid": BLOB_CID})),
    "namespace_8k_in_query": Case("GET", "/v1/models?namespace=" + "n" * 8000, 400, "invalid_name"),
    "prefix_1mb_in_query": Case("GET", "/v1/models?prefix=" + "p" * MB, HTTP, None),
    "pointer_reason_1mb": Case("PUT", POINTER, 413, "payload_too_large",
                               body=js({"cid": BLOB_CID, "reason": "r" * MB})),
    "revoke_reason_1mb": Case("POST", f"/v1/keys/{KEY_ID}/revoke", 413, "payload_too_large",
                              body=js({"reason": "r" * MB})),
    "revoke_reason_2k": Case("POST", f"/v1/keys/{KEY_ID}/revoke", 400, "bad_request",
                             body=js({"reason": "r" * 2000})),
    "publish_reason_1mb": Case("POST", PUBLISH, 400, "bad_request",
                               body=js({"manifest": manifest_raw(), "reason": "r" * MB})),
    "key_id_8k_in_path": Case("GET", "/v1/keys/ed25519:" + "a" * 8000, (400, 404), ("bad_request", "not_found")),
    "revoke_key_id_8k_in_path": Case("POST", "/v1/keys/ed25519:" + "a" * 8000 + "/revoke", (400, 404),
                                     ("bad_request", "not_found"), body=js({"reason": "x"})),
    "key_id_1mb_in_path": Case("GET", "/v1/keys/" + "a" * MB, HTTP, None),
    "invalid_cid_pack": Case("GET", "/v1/packs/not-a-cid", 400, "invalid_cid"),
    "invalid_cid_8k_pack": Case("GET", "/v1/packs/b" + "a" * 8000, 400, "invalid_cid"),
    "invalid_cid_ipfs": Case("GET", "/ipfs/not-a-cid", 400, "invalid_cid"),
    "invalid_cid_blob_put": Case("PUT", "/v1/blobs/not-a-cid", 400, "invalid_cid", body=lambda: BLOB),
    "invalid_cid_pointer_body": Case("PUT", POINTER, 400, "invalid_cid", body=js({"cid": "not-a-cid"})),
    "limit_5000_digits": Case("GET", "/v1/models?limit=" + DIGITS, 400, "bad_request"),
    "limit_20_digits": Case("GET", "/v1/models?limit=" + "9" * 20, 400, "bad_request"),
    "cursor_not_base64": Case("GET", "/v1/models?cursor=%25%25%25", 400, "bad_request"),
    "cursor_too_long": Case("GET", "/v1/models?cursor=" + "A" * 4000, 400, "bad_request"),
    "cursor_huge_int_tokens": Case("GET", "/v1/tokens?cursor=" + HUGE_CURSOR, 400, "bad_request", "admin"),
    "cursor_huge_int_history": Case("GET", POINTER + "/history?cursor=" + HUGE_CURSOR, 400, "bad_request"),
    "range_30_digits_start": Case("GET", f"/ipfs/{BLOB_CID}", 400, "bad_request",
                                  headers={"Range": "bytes=" + "9" * 30 + "-"}, setup="blob"),
    "range_30_digits_end": Case("GET", f"/ipfs/{BLOB_CID}", 400, "bad_request",
                                headers={"Range": "bytes=0-" + "9" * 30}, setup="blob"),
    "manifest_json_shard": Case("POST", PUBLISH, 422, "invalid_manifest", setup="shards",
                                body=js({"manifest": helpers.manifest([("manifest.json", SHARDS[0][1])])})),
    "model_name_other_namespace": Case("POST", PUBLISH, 422, "model_name_mismatch", setup="shards",
                                       body=js({"manifest": manifest_raw(model_name="beta/tiny")})),
    "bearer_1mb": Case("GET", "/v1/whoami", HTTP, None, "x" * MB),
    "bearer_8k": Case("GET", "/v1/whoami", 401, "unauthorized", "x" * 8000),
    "no_namespace_token_publishes": Case("POST", PUBLISH, 403, "forbidden", "nobody", setup="shards",
                                         body=js({"manifest": manifest_raw()})),
    "small_order_key_challenge": Case("POST", "/v1/key-challenges", 400, "bad_public_key",
                                      body=js({"public_key": IDENTITY})),
    "small_order_key_register": Case("POST", "/v1/keys", 400, "bad_public_key",
                                     body=js({"public_key": IDENTITY, "challenge": "c" * 43,
                                              "signature": base64.b64encode(bytes([1]) + bytes(63)).decode()})),
    "node_url_with_userinfo": Case("POST", "/v1/nodes", 400, "bad_request", "admin",
                                   js({"name": "n1", "kind": "kubo", "url": "http://user:pw@127.0.0.1:5001"})),
    "publish_float_overflow": Case("POST", PUBLISH, 422, "invalid_manifest",
                                   body=raw(lambda: '{"manifest": {"model_version": 1e999999}}')),
    "publish_invalid_utf8": Case("POST", PUBLISH, 422, "invalid_manifest", body=lambda: b"\xff\xfe{}"),
    "publish_body_not_object": Case("POST", PUBLISH, 400, "bad_request", body=raw(lambda: "[]")),
    "publish_tag_8k": Case("POST", PUBLISH, 400, "bad_request", setup="shards",
                           body=js({"manifest": manifest_raw(), "tag": "t" * 8000})),
    "if_match_8k": Case("PUT", POINTER, 400, "invalid_cid",
                        body=js({"cid": BLOB_CID}), headers={"If-Match": '"' + "b" * 8000 + '"'}, setup="blob"),
    "ipns_name_8k": Case("GET", "/ipns/k51" + "q" * 8000, 400, "bad_ipns_name",
                         headers={"Accept": "application/vnd.ipfs.ipns-record"}),
    "shard_filename_8k": Case("GET", "/v1/packs/{pack}/shards/" + "f" * 8000, 404, "not_found",
                              setup="pack"),
    "token_unknown_scope": Case("POST", "/v1/tokens", 400, "bad_request", "admin",
                                js({"publisher": "x", "scopes": ["root"]})),
    "no_namespace_token_uploads": Case("PUT", f"/v1/blobs/{BLOB_CID}", 403, "upload_needs_namespace", "nobody",
                                       lambda: BLOB, {"Content-Type": "application/octet-stream"}),
    "node_url_with_query": Case("POST", "/v1/nodes", 400, "bad_request", "admin",
                                js({"name": "n1", "kind": "kubo", "url": "http://127.0.0.1:5001/?x=1#f"})),
    "node_name_1mb": Case("POST", "/v1/nodes", 413, "payload_too_large", "admin",
                          js({"name": "n" * MB, "kind": "kubo", "url": "http://127.0.0.1:5001"})),
}  # fmt: skip

EXTRA_TABLES = (ApiToken, IpfsNode, Namespace, NamespaceMember, Publisher, Signature, SigningKey, TrustedKey)


async def rows(reg: Registry) -> dict[str, int]:
    out = await helpers.counts(reg.client)
    async with reg.client.app[SESSIONS]() as s:
        for t in EXTRA_TABLES:
            out[t.__tablename__] = (await s.execute(select(func.count()).select_from(t))).scalar_one()
    return out


async def token_for(reg: Registry, who: str | None) -> str | None:
    if who in (None, "alice", "admin"):
        return {None: None, "alice": reg.alice, "admin": reg.admin}[who]
    if who == "nobody":
        return await helpers.token(reg.client.app, "nobody", [])
    return who


@pytest.mark.parametrize("name", list(CATALOG))
async def test_hostile_input_is_a_bounded_4xx_that_writes_nothing(reg: Registry, name: str) -> None:
    case = CATALOG[name]
    if case.setup == "blob":
        r = await helpers.upload(reg.client, reg.alice, BLOB)
        assert r.status in (200, 201), await r.text()
    elif case.setup == "shards":
        for _, shard in SHARDS:
            r = await helpers.upload(reg.client, reg.alice, shard)
            assert r.status in (200, 201), await r.text()
    path = case.path
    if case.setup == "pack":
        pack = await helpers.upload_and_publish(reg.client, reg.alice, "acme/tiny", SHARDS)
        path = path.replace("{pack}", pack["cid"])
    tok = await token_for(reg, case.token)
    before = await rows(reg)
    headers = dict(case.headers)
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    data: bytes | None = None
    if case.body is not None:
        data = case.body()
        headers.setdefault("Content-Type", "application/json")
    r = await reg.client.request(case.method, path, data=data, headers=headers)
    body = await r.read()
    statuses = (case.status,) if isinstance(case.status, int) else case.status
    assert r.status != 500 and 400 <= r.status < 500, (r.status, body[:500])
    assert r.status in statuses, (r.status, body[:500])
    assert len(body) < MAX_ANSWER, (len(body), body[:300])
    if case.code is not None:
        err = json.loads(body)["error"]
        codes = (case.code,) if isinstance(case.code, str) else case.code
        assert err["code"] in codes, err
        assert len(err["message"]) < 600, err["message"][:300]
    assert await rows(reg) == before
