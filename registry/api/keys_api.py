"""Signing keys, namespace trust policies and a pack's trust verdict over HTTP.

Publishers register Ed25519 public keys (the key belongs to the token's publisher) and revoke them with
a time; a namespace's admins say which keys or publishers it trusts and how many signatures curation
needs. ``GET /v1/packs/{cid}/trust`` is what the curation rule and ``modelpack verify`` read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from pinner.cids import cid_str, parse_cid
from registry.api import formats
from registry.api.auth import read_gate, require_principal, services
from registry.api.endpoint import CID, CURSOR, LIMIT, NS, READ_ERRORS, Param, endpoint, read_body
from registry.api.keys import TRUST
from registry.api.listing import AMBIGUOUS, PACK_MODEL, pack_model
from registry.api.pagination import decode_cursor, encode_cursor, page_limit
from registry.errors import BadRequest
from registry.names import check_name, check_plain_name
from registry.trust.key_challenge import CHALLENGE_MAX_LEN
from registry.trust.key_registry import KeyView
from registry.trust.policies import PolicyView, TrustService, TrustVerdict
from registry.trust.policy import TrustPolicy, policy_to_json

routes = web.RouteTableDef()
BODY_MAX = 64 * 1024
KEY_ID_MAX = 128
KEY_ID = Param(
    "key_id",
    "path",
    {"type": "string", "maxLength": KEY_ID_MAX},
    "ed25519:<sha256 hex of the raw key>",
    required=True,
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ChallengeIn(_In):
    public_key: str = Field(
        max_length=4096,
        description="Ed25519: SubjectPublicKeyInfo PEM or raw 32 bytes in base64",
        json_schema_extra={"pattern": formats.PUBLIC_KEY},
    )


class KeyIn(ChallengeIn):
    challenge: str = Field(
        max_length=CHALLENGE_MAX_LEN, description="from POST /v1/key-challenges (single use, short-lived)"
    )
    signature: str = Field(
        max_length=128,
        description="the key's Ed25519 signature of the challenge's statement, base64 (proof of possession)",
    )


class ChallengeOut(_Out):
    key_id: str
    publisher: str
    challenge: str
    statement: str = Field(description="the exact text to sign with the key (UTF-8)")
    expires_at: datetime


class RevokeIn(_In):
    reason: str = Field(min_length=1, max_length=1024, json_schema_extra={"pattern": r"\S"})  # not blank
    at: datetime | None = Field(
        None, description="revocation time (RFC 3339); default now; in the past: global admin only"
    )


class MaxDriftIn(_In):
    min_top1_agreement: float | None = Field(
        None, description="0 to 1: the least share of probe rows whose top-1 token matches the curated pack's"
    )
    max_mean_kl: float | None = Field(
        None, description="0 to 100 nats: the largest mean KL(curated || candidate) over the probe rows"
    )


class PolicyIn(_In):
    required_signatures: int = Field(1, ge=1, le=64)
    keys: list[str] = Field(default_factory=list, max_length=256)
    publishers: list[str] = Field(default_factory=list, max_length=64)
    reason: str | None = Field(None, max_length=1024)
    max_drift: MaxDriftIn | None = Field(
        None,
        description="curation refuses a pack whose behavioural fingerprint drifts past these limits from the "
        "pack curated now (an admin may still curate it by hand with a reason); out of bounds: 422",
    )


class KeyOut(_Out):
    key_id: str
    publisher: str | None
    algorithm: str
    public_key: str = Field(description="raw 32 bytes, base64")
    registered_at: datetime
    revoked_at: datetime | None
    revocation_reason: str | None


class KeyPage(_Out):
    items: list[KeyOut]
    next_cursor: str | None = None


class RevokeOut(_Out):
    key: KeyOut
    revalidated_signatures: int = Field(description="stored signatures now judged revoked")
    affected_packs: list[str]


class PolicyOut(_Out):
    namespace: str
    required_signatures: int
    keys: list[KeyOut]
    publishers: list[str]
    publisher_keys: list[KeyOut] = Field(description="the keys of the trusted publishers, resolved now")
    max_drift: dict[str, float] | None = Field(None, description="the drift limits; null: no limit")


class SignatureJudgementOut(_Out):
    key_id: str
    kind: str
    verdict: str
    reason: str
    trusted: bool
    received_at: datetime = Field(description="the registry's receipt time: the signing-time bound")
    signature: str


class TrustOut(_Out):
    pack_cid: str
    namespace: str
    satisfied: bool
    required: int
    trusted_valid: list[str]
    reasons: list[str]
    signatures: list[SignatureJudgementOut]


M = TypeVar("M", bound=BaseModel)


def trust(request: web.Request) -> TrustService:
    return request.app[TRUST]


async def parse_body(request: web.Request, model: type[M], what: str) -> M:
    return await read_body(request, model, what)


def _key(k: KeyView) -> KeyOut:
    return KeyOut.model_validate(k, from_attributes=True)


def _policy(p: PolicyView) -> PolicyOut:
    return PolicyOut(
        namespace=p.namespace,
        required_signatures=p.required_signatures,
        keys=[_key(k) for k in p.keys],
        publishers=list(p.publishers),
        publisher_keys=[_key(k) for k in p.publisher_keys],
        max_drift=p.max_drift,
    )


def trust_out(v: TrustVerdict) -> TrustOut:
    return TrustOut(
        pack_cid=v.pack_cid,
        namespace=v.namespace,
        satisfied=v.satisfied,
        required=v.required,
        trusted_valid=list(v.trusted_valid),
        reasons=list(v.reasons),
        signatures=[SignatureJudgementOut.model_validate(j, from_attributes=True) for j in v.signatures],
    )


def _key_id(request: web.Request) -> str:
    key_id = request.match_info["key_id"]
    if len(key_id) > KEY_ID_MAX:
        raise BadRequest(f"key id is longer than {KEY_ID_MAX} characters")
    return key_id


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


@routes.post("/v1/key-challenges")
@endpoint(
    "A challenge to sign with a key before registering it (proof of possession)",
    tag="trust",
    responses={200: ChallengeOut},
    body=ChallengeIn,
    body_max=BODY_MAX,
    auth=True,
    errors=(400, 401, 403, 413),
)
async def key_challenge(request: web.Request) -> web.Response:
    """A single-use challenge for this key and the token's publisher; sign ``statement`` with the key."""
    principal = await require_principal(request)
    body = await parse_body(request, ChallengeIn, "key challenge")
    pk, ch = await trust(request).issue_challenge(principal, body.public_key)
    out = ChallengeOut(
        key_id=pk.key_id,
        publisher=principal.publisher,
        challenge=ch.challenge,
        statement=ch.statement.decode(),
        expires_at=datetime.fromtimestamp(ch.expires_at, UTC),
    )
    return _json(out)


@routes.post("/v1/keys")
@endpoint(
    "Register an Ed25519 public key for your publisher",
    tag="trust",
    responses={200: KeyOut, 201: KeyOut},
    body=KeyIn,
    body_max=BODY_MAX,
    auth=True,
    errors=(400, 401, 403, 409, 413),
)
async def register_key(request: web.Request) -> web.Response:
    """Register an Ed25519 public key for the token's publisher (201 new, 200 already yours).

    The body carries proof of possession: a challenge from ``POST /v1/key-challenges`` and the key's
    signature of its statement.
    """
    principal = await require_principal(request)
    body = await parse_body(request, KeyIn, "key")
    view, created = await trust(request).register_key(
        principal, body.public_key, body.challenge, body.signature
    )
    return _json(_key(view), 201 if created else 200)


@routes.get("/v1/keys")
@endpoint(
    "Registered signing keys",
    tag="trust",
    responses={200: KeyPage},
    params=(Param("publisher", "query", {"type": "string", "pattern": formats.PLAIN_NAME}), CURSOR, LIMIT),
    errors=READ_ERRORS,
)
async def list_keys(request: web.Request) -> web.Response:
    """Registered keys, ordered by key id; ``?publisher=NAME`` for one publisher's."""
    await read_gate(request)
    limit = page_limit(request, services(request))
    cur = decode_cursor(request.query.get("cursor"), 1)
    publisher = request.query.get("publisher")
    if publisher is not None:
        check_plain_name(publisher, "publisher name")
    rows = await trust(request).list_keys(publisher, after=str(cur[0]) if cur else None, limit=limit + 1)
    page = KeyPage(
        items=[_key(k) for k in rows[:limit]],
        next_cursor=encode_cursor([rows[limit - 1].key_id]) if len(rows) > limit else None,
    )
    return _json(page)


@routes.get("/v1/keys/{key_id}")
@endpoint("One signing key", tag="trust", responses={200: KeyOut}, params=(KEY_ID,), errors=READ_ERRORS)
async def get_key(request: web.Request) -> web.Response:
    await read_gate(request)
    return _json(_key(await trust(request).get_key(_key_id(request))))


@routes.post("/v1/keys/{key_id}/revoke")
@endpoint(
    "Revoke a key from a time (in the past: global admin only)",
    tag="trust",
    responses={200: RevokeOut},
    params=(KEY_ID,),
    body=RevokeIn,
    body_max=BODY_MAX,
    auth=True,
    errors=(400, 401, 403, 404, 409, 413),
)
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke from ``at`` (default now): signatures the registry receives from then on are invalid."""
    principal = await require_principal(request)
    body = await parse_body(request, RevokeIn, "revocation")
    done = await trust(request).revoke_key(principal, _key_id(request), body.reason, body.at)
    return _json(
        RevokeOut(
            key=_key(done.key),
            revalidated_signatures=done.revalidated_signatures,
            affected_packs=list(done.affected_packs),
        )
    )


@routes.get("/v1/namespaces/{namespace}/policy")
@endpoint(
    "A namespace's trust policy",
    tag="trust",
    responses={200: PolicyOut},
    params=(NS,),
    errors=READ_ERRORS,
    operation_id="getTrustPolicy",
)
async def get_policy(request: web.Request) -> web.Response:
    """The namespace's trust policy, with the trusted publishers' keys resolved."""
    await read_gate(request)
    ns = check_name(request.match_info["namespace"], "namespace")
    return _json(_policy(await trust(request).get_policy(ns)))


@routes.get("/v1/namespaces/{namespace}/policy/file")
@endpoint(
    "The policy in the offline file format",
    tag="trust",
    responses={200: "application/json"},
    params=(NS,),
    errors=READ_ERRORS,
    operation_id="getTrustPolicyFile",
)
async def get_policy_file(request: web.Request) -> web.Response:
    """The same policy in the offline file format (``modelpack verify --trust-policy FILE``)."""
    await read_gate(request)
    ns = check_name(request.match_info["namespace"], "namespace")
    view = await trust(request).get_policy(ns)
    doc: dict[str, Any] = policy_to_json(TrustPolicy({ns: view.namespace_policy()}))
    return web.json_response(doc)


@routes.put("/v1/namespaces/{namespace}/policy")
@endpoint(
    "Replace a namespace's trust policy (audited)",
    tag="trust",
    responses={200: PolicyOut},
    params=(NS,),
    body=PolicyIn,
    body_max=BODY_MAX,
    auth=True,
    errors=(400, 401, 403, 404, 413, 422),
    operation_id="setTrustPolicy",
)
async def set_policy(request: web.Request) -> web.Response:
    """Replace the trust policy (admin scope for this namespace); audited with before and after."""
    principal = await require_principal(request)
    ns = check_name(request.match_info["namespace"], "namespace")
    body = await parse_body(request, PolicyIn, "policy")
    view = await trust(request).set_policy(
        principal,
        ns,
        keys=body.keys,
        publishers=body.publishers,
        required_signatures=body.required_signatures,
        reason=body.reason,
        max_drift=body.max_drift.model_dump(exclude_none=True) if body.max_drift is not None else None,
    )
    return _json(_policy(view))


@routes.get("/v1/packs/{cid}/trust")
@endpoint(
    "Signature verdicts and whether the namespace's policy is satisfied",
    tag="trust",
    responses={200: TrustOut},
    params=(CID, PACK_MODEL),
    errors=(*READ_ERRORS, AMBIGUOUS),
    operation_id="getPackTrust",
)
async def pack_trust(request: web.Request) -> web.Response:
    """Every stored signature judged now, and whether they satisfy the namespace's policy."""
    await read_gate(request)
    cid = cid_str(parse_cid(request.match_info["cid"]))
    return _json(trust_out(await trust(request).pack_trust(cid, pack_model(request))))
