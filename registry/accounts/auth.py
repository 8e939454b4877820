"""Publishers and API tokens: shown once, stored as sha256, scoped (publish/admin) and namespaced, revocable.

``authenticate`` turns a bearer token into a ``Principal``; ``require_namespace`` decides whether that
principal may write in a namespace (a member publisher whose token covers it, or an admin token).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.base import utcnow
from registry.db.models import ApiToken, Namespace, NamespaceMember, Publisher
from registry.errors import BadRequest, Forbidden, NotFound, Unauthorized
from registry.names import check_name

TOKEN_PREFIX = "mpk_"
SCOPES = ("publish", "admin")
LAST_USED_GRANULARITY = timedelta(seconds=60)  # at most one write per token per minute


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a publisher through one token."""

    publisher_id: int
    publisher: str
    token_id: int
    scopes: frozenset[str]
    namespaces: tuple[str, ...] | None  # None: every namespace the publisher is a member of

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def covers(self, namespace: str) -> bool:
        return self.is_admin or self.namespaces is None or namespace in self.namespaces


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: ``token`` is the only time the secret is visible."""

    id: int
    token: str
    prefix: str
    publisher: str
    scopes: tuple[str, ...]
    namespaces: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    prefix: str
    publisher: str
    scopes: tuple[str, ...]
    namespaces: tuple[str, ...] | None
    description: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(scopes))
    bad = [s for s in out if s not in SCOPES]
    if bad or not out:
        raise BadRequest(
            f"scope {bad[0] if bad else '(none)'!r} is not one of {', '.join(SCOPES)}", scopes=list(out)
        )
    return out


async def ensure_publisher(session: AsyncSession, name: str) -> Publisher:
    check_name(name, "publisher name")
    pub = (await session.execute(select(Publisher).where(Publisher.name == name))).scalar_one_or_none()
    if pub is None:
        pub = Publisher(name=name)
        session.add(pub)
        await session.flush()
    return pub


async def ensure_member(session: AsyncSession, namespace: str, publisher: Publisher) -> Namespace:
    check_name(namespace, "namespace")
    ns = (await session.execute(select(Namespace).where(Namespace.name == namespace))).scalar_one_or_none()
    if ns is None:
        ns = Namespace(name=namespace)
        session.add(ns)
        await session.flush()
    member = await session.get(NamespaceMember, (ns.id, publisher.id))
    if member is None:
        session.add(NamespaceMember(namespace_id=ns.id, publisher_id=publisher.id))
        await session.flush()
    return ns


class AuthService:
    """Token issue, lookup and revocation over the index database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create_token(
        self,
        publisher: str,
        *,
        namespaces: Iterable[str] | None = None,
        scopes: Iterable[str] = ("publish",),
        description: str | None = None,
    ) -> IssuedToken:
        """Creates the publisher, namespaces and memberships as needed, then a token (shown once)."""
        scope_t = _check_scopes(scopes)
        ns_t = tuple(dict.fromkeys(namespaces)) if namespaces else None
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        for attempt in range(3):
            try:
                async with self._sessions() as s, s.begin():
                    pub = await ensure_publisher(s, publisher)
                    for ns in ns_t or ():
                        await ensure_member(s, ns, pub)
                    row = ApiToken(
                        publisher_id=pub.id,
                        token_hash=hash_token(token),
                        prefix=token[:12],
                        scopes=list(scope_t),
                        namespaces=list(ns_t) if ns_t is not None else None,
                        description=description,
                    )
                    s.add(row)
                    await s.flush()
                    return IssuedToken(row.id, token, row.prefix, pub.name, scope_t, ns_t)
            except IntegrityError:  # a concurrent create of the same publisher/namespace: retry
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def authenticate(self, token: str) -> Principal:
        """The principal behind a bearer token; Unauthorized when it is unknown or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 256:
            raise Unauthorized(
                "the API token is not a modelpack token (it should start with 'mpk_')", reason="malformed"
            )
        digest = hash_token(token)
        async with self._sessions() as s:
            row = (
                await s.execute(
                    select(ApiToken, Publisher.name)
                    .join(Publisher, Publisher.id == ApiToken.publisher_id)
                    .where(ApiToken.token_hash == digest)
                )
            ).one_or_none()
        if row is None or not hmac.compare_digest(row[0].token_hash, digest):
            raise Unauthorized("the API token is not known to this registry", reason="unknown")
        tok, pub_name = row
        if tok.revoked_at is not None:
            raise Unauthorized(f"the API token {tok.prefix}... was revoked", reason="revoked")
        now = utcnow()
        if tok.last_used_at is None or now - tok.last_used_at > LAST_USED_GRANULARITY:
            async with self._sessions() as s, s.begin():
                await s.execute(update(ApiToken).where(ApiToken.id == tok.id).values(last_used_at=now))
        return Principal(
            publisher_id=tok.publisher_id,
            publisher=pub_name,
            token_id=tok.id,
            scopes=frozenset(tok.scopes),
            namespaces=tuple(tok.namespaces) if tok.namespaces is not None else None,
        )

    async def list_tokens(self, principal: Principal) -> list[TokenInfo]:
        q = select(ApiToken, Publisher.name).join(Publisher, Publisher.id == ApiToken.publisher_id)
        if not principal.is_admin:
            q = q.where(ApiToken.publisher_id == principal.publisher_id)
        async with self._sessions() as s:
            rows = (await s.execute(q.order_by(ApiToken.id))).all()
        return [_info(t, name) for t, name in rows]

    async def revoke(self, principal: Principal, token_id: int) -> TokenInfo:
        """Revokes one of the caller's tokens (an admin may revoke any)."""
        async with self._sessions() as s, s.begin():
            row = (
                await s.execute(
                    select(ApiToken, Publisher.name)
                    .join(Publisher, Publisher.id == ApiToken.publisher_id)
                    .where(ApiToken.id == token_id)
                )
            ).one_or_none()
            if row is None or (not principal.is_admin and row[0].publisher_id != principal.publisher_id):
                raise NotFound(f"no token with id {token_id}", token_id=token_id)
            tok, name = row
            if tok.revoked_at is None:
                tok.revoked_at = utcnow()
            return _info(tok, name)


def _info(t: ApiToken, publisher: str) -> TokenInfo:
    return TokenInfo(
        id=t.id,
        prefix=t.prefix,
        publisher=publisher,
        scopes=tuple(t.scopes),
        namespaces=tuple(t.namespaces) if t.namespaces is not None else None,
        description=t.description,
        created_at=t.created_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
    )


async def require_namespace(session: AsyncSession, principal: Principal, namespace: str) -> Namespace:
    """The namespace row if ``principal`` may publish or move pointers in it, else Forbidden/NotFound."""
    if not ({"publish", "admin"} & principal.scopes):
        raise Forbidden("the API token has no publish scope", namespace=namespace)
    if not principal.covers(namespace):
        raise Forbidden(
            f"the API token is limited to namespaces {', '.join(principal.namespaces or ())}; not {namespace!r}",
            namespace=namespace,
        )
    ns = (await session.execute(select(Namespace).where(Namespace.name == namespace))).scalar_one_or_none()
    if ns is None:
        if principal.is_admin:
            ns = Namespace(name=namespace)
            session.add(ns)
            await session.flush()
            return ns
        raise Forbidden(
            f"namespace {namespace!r} does not exist; an admin must create it", namespace=namespace
        )
    if principal.is_admin:
        return ns
    member = await session.get(NamespaceMember, (ns.id, principal.publisher_id))
    if member is None:
        raise Forbidden(
            f"publisher {principal.publisher!r} is not a member of namespace {namespace!r}",
            namespace=namespace,
        )
    return ns
