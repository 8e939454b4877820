"""Publishers and API tokens: shown once, stored as sha256, scoped and namespaced, revocable.

``authenticate`` turns a bearer token into a ``Principal`` (registry.accounts.principal holds the rules);
``require_namespace`` decides whether that principal may write in a namespace (a member publisher whose token
covers it, or a token with the admin scope for it). A token never issues one broader than itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.accounts.principal import SCOPES, Principal
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.models import ApiToken, Namespace, NamespaceMember, Publisher
from registry.db.naming import namespace_named, namespaces_named
from registry.errors import BadRequest, Forbidden, NotFound, Unauthorized
from registry.names import check_name, check_plain_name

TOKEN_PREFIX = "mpk_"
LAST_USED_GRANULARITY = timedelta(seconds=60)  # at most one write per token per minute


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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
    check_plain_name(name, "publisher name")
    pub = (await session.execute(select(Publisher).where(Publisher.name == name))).scalar_one_or_none()
    if pub is None:
        pub = Publisher(name=name)
        session.add(pub)
        await session.flush()
    return pub


async def ensure_member(session: AsyncSession, namespace: str, publisher: Publisher) -> Namespace:
    check_name(namespace, "namespace")
    ns = (await session.execute(select(Namespace).where(namespace_named(namespace)))).scalar_one_or_none()
    if ns is None:
        ns = Namespace(name=namespace)
        session.add(ns)
        await session.flush()
    member = await session.get(NamespaceMember, (ns.id, publisher.id))
    if member is None:
        session.add(NamespaceMember(namespace_id=ns.id, publisher_id=publisher.id))
        await session.flush()
    return ns


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    last_used_at: datetime | None
    expires: float  # on the monotonic clock


class AuthService:
    """Token issue, lookup and revocation over the index database.

    ``authenticate`` keeps what it read of a token for ``cache_ttl_s`` (a bounded LRU of
    ``cache_entries``), so a busy client costs no database round trip per request. A revocation through
    this service drops the entry at once; one made by another daemon on the same database is seen within
    ``cache_ttl_s``. 0 turns the cache off.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = utcnow,
        cache_ttl_s: float = 5.0,
        cache_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._clock = clock  # ``last_used_at`` timestamps (tests inject one)
        self._ttl = cache_ttl_s
        self._max = cache_entries
        self._now = monotonic
        self._cache: OrderedDict[str, _Cached] = OrderedDict()  # token digest -> what was read
        self._generation = 0  # bumped by forget(): a read that began before it is not cached
        self._flights: dict[tuple[str, int], asyncio.Future[Principal]] = {}  # lookups under way

    async def create_token(
        self,
        publisher: str,
        *,
        namespaces: Iterable[str] | None = None,
        scopes: Iterable[str] = ("publish",),
        description: str | None = None,
        issuer: Principal | None = None,
    ) -> IssuedToken:
        """Creates the publisher, namespaces and memberships as needed, then a token (shown once).

        ``namespaces``: None for no list (every namespace), ``[]`` for none. ``issuer``: the token asking
        (None: the operator on the local database); Forbidden when the new token would be broader than it.
        """
        scope_t = _check_scopes(scopes)
        ns_t = tuple(dict.fromkeys(namespaces)) if namespaces is not None else None
        if issuer is not None:
            issuer.check_mint(publisher, scope_t, ns_t)
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
        hit = self._cache.get(digest)
        if hit is not None and hit.expires > self._now():
            self._cache.move_to_end(digest)
            if hit.last_used_at is None or hit.last_used_at <= self._clock() - LAST_USED_GRANULARITY:
                written = await self._touch(hit.principal.token_id, hit.last_used_at)
                self._cache[digest] = replace(hit, last_used_at=written)
            return hit.principal
        # One read per token at a time: when an entry expires under load, the requests that miss together
        # share one lookup instead of each reading the row (that burst set the p99). A lookup that began
        # before a revocation here (an older generation) is never joined by a check made after it.
        if self._ttl <= 0:  # no cache: every check reads the row itself
            return await self._lookup(digest, self._generation)
        key = (digest, self._generation)
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._lookup(digest, self._generation))
            self._flights[key] = flight
            flight.add_done_callback(lambda f: self._landed(key, f))
        return await asyncio.shield(flight)  # a waiter that goes away does not cancel the others' lookup

    def _landed(self, key: tuple[str, int], flight: asyncio.Future[Principal]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have gone

    async def _lookup(self, digest: str, generation: int) -> Principal:
        async with readonly_session(self._sessions) as s:
            row = (
                await s.execute(
                    select(ApiToken, Publisher.name)
                    .join(Publisher, Publisher.id == ApiToken.publisher_id)
                    .where(ApiToken.token_hash == digest)
                )
            ).one_or_none()
        if row is None or not hmac.compare_digest(row[0].token_hash, digest):
            self._cache.pop(digest, None)
            raise Unauthorized("the API token is not known to this registry", reason="unknown")
        tok, pub_name = row
        if tok.revoked_at is not None:
            self._cache.pop(digest, None)
            raise Unauthorized(f"the API token {tok.prefix}... was revoked", reason="revoked")
        last_used = await self._touch(tok.id, tok.last_used_at)
        principal = Principal(
            publisher_id=tok.publisher_id,
            publisher=pub_name,
            token_id=tok.id,
            scopes=frozenset(tok.scopes),
            namespaces=tuple(tok.namespaces) if tok.namespaces is not None else None,
        )
        if self._ttl > 0 and generation == self._generation:
            self._cache[digest] = _Cached(principal, last_used, self._now() + self._ttl)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return principal

    def forget(self, token_id: int | None = None) -> None:
        """Drop the cached principal of ``token_id`` (None: every entry)."""
        self._generation += 1
        if token_id is None:
            self._cache.clear()
            return
        for digest in [d for d, c in self._cache.items() if c.principal.token_id == token_id]:
            del self._cache[digest]

    async def _touch(self, token_id: int, last_used_at: datetime | None) -> datetime | None:
        """Records the token's use, coarsely: a write (the write lock on SQLite) only when the stored
        ``last_used_at`` is older than ``LAST_USED_GRANULARITY``, so a busy token costs one write a minute.
        The update re-checks the age, so concurrent checks of one token write it once. Returns the
        ``last_used_at`` now known."""
        now = self._clock()
        cutoff = now - LAST_USED_GRANULARITY
        if last_used_at is not None and last_used_at > cutoff:
            return last_used_at  # decided from the read alone: no write transaction
        fresh = or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= cutoff)
        async with self._sessions() as s, s.begin():
            await s.execute(update(ApiToken).where(ApiToken.id == token_id, fresh).values(last_used_at=now))
        return now

    async def list_tokens(
        self, principal: Principal, *, after_id: int = 0, limit: int | None = None
    ) -> tuple[list[TokenInfo], int | None]:
        """Every token for a global admin; else the publisher's own and, for a namespace admin, the tokens
        within its namespaces (of publishers that are members there).

        One page in id order: at most ``limit`` rows after ``after_id`` are read (in SQL), and the ones the
        caller may not see are dropped, so a page can be short; the second value is the last id read when
        more may follow (the next page's ``after_id``), else None.
        """
        q = select(ApiToken, Publisher.name).join(Publisher, Publisher.id == ApiToken.publisher_id)
        if not principal.is_global_admin:
            members = (
                select(NamespaceMember.publisher_id)
                .join(Namespace, Namespace.id == NamespaceMember.namespace_id)
                .where(namespaces_named(principal.namespaces or ()))
            )
            mine = ApiToken.publisher_id == principal.publisher_id
            q = q.where(or_(mine, ApiToken.publisher_id.in_(members)) if principal.is_admin else mine)
        q = q.where(ApiToken.id > after_id).order_by(ApiToken.id)
        async with readonly_session(self._sessions) as s:
            rows = (await s.execute(q.limit(limit + 1 if limit else None))).all()
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit else rows
        items = [
            _info(t, name)
            for t, name in rows
            if t.publisher_id == principal.publisher_id
            or principal.may_revoke(t.id, t.publisher_id, t.namespaces)
        ]
        return items, (rows[-1][0].id if more else None)

    async def revoke(self, principal: Principal, token_id: int) -> TokenInfo:
        """Revokes a token the caller may revoke (``Principal.may_revoke``); others are NotFound."""
        async with self._sessions() as s, s.begin():
            row = (
                await s.execute(
                    select(ApiToken, Publisher.name)
                    .join(Publisher, Publisher.id == ApiToken.publisher_id)
                    .where(ApiToken.id == token_id)
                )
            ).one_or_none()
            if row is None or not principal.may_revoke(row[0].id, row[0].publisher_id, row[0].namespaces):
                raise NotFound(f"no token with id {token_id}", token_id=token_id)
            tok, name = row
            if tok.revoked_at is None:
                tok.revoked_at = utcnow()
            info = _info(tok, name)
        self.forget(token_id)  # after the commit: a request racing it re-reads the revoked row
        return info


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
    if not principal.may_write:
        raise Forbidden("the API token has no publish scope", namespace=namespace)
    if not principal.covers(namespace):  # an admin token's list binds it too; [] covers nothing
        limited = ", ".join((principal.namespaces or ())[:8]) or "(none)"
        raise Forbidden(
            f"the API token is limited to namespaces {limited}; not {namespace!r}", namespace=namespace
        )
    ns = (await session.execute(select(Namespace).where(namespace_named(namespace)))).scalar_one_or_none()
    if ns is None:
        if principal.may_admin(namespace):
            ns = Namespace(name=namespace)
            session.add(ns)
            await session.flush()
            return ns
        raise Forbidden(
            f"namespace {namespace!r} does not exist; an admin must create it", namespace=namespace
        )
    if principal.may_admin(namespace):
        return ns
    member = await session.get(NamespaceMember, (ns.id, principal.publisher_id))
    if member is None:
        raise Forbidden(
            f"publisher {principal.publisher!r} is not a member of namespace {namespace!r}",
            namespace=namespace,
        )
    return ns
