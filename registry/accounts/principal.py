"""Who is calling, and what a token may do: scopes, namespaces, global versus namespace admin.

The authorization model (README "Security model"):

- ``read``: read when ``server.read_requires_token`` is on; nothing else.
- ``publish``: upload, publish, move pointers, register keys, request validations in the namespaces the
  token covers where its publisher is a member (and read).
- ``admin``: everything ``publish`` gives, in the namespaces the token covers, without membership: curate
  and un-curate, trust policies, tokens for its own publisher and revoking tokens within those namespaces.
- ``pin``: reserved for the Pinning Service API; grants nothing else, and no other scope includes it.

``namespaces`` is the token's namespace list: ``None`` (no list) means every namespace (of the publisher's
memberships, for publishing); ``()`` means none. Only an admin token with no list is a *global* admin: tokens
for other publishers, IPFS nodes, backdated key revocations and every namespace's policies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from registry.errors import Forbidden

SCOPES = ("read", "publish", "admin", "pin")
IMPLIED = {  # a scope and every scope it includes
    "read": frozenset({"read"}),
    "publish": frozenset({"publish", "read"}),
    "admin": frozenset({"admin", "publish", "read"}),  # not pin: pinning arbitrary CIDs is granted apart
    "pin": frozenset({"pin"}),
}
WRITE_SCOPES = frozenset({"publish", "admin"})
READ_SCOPES = frozenset({"read", "publish", "admin"})


def effective(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes granted, with what each implies (``admin`` includes ``publish`` and ``read``)."""
    out: set[str] = set()
    for s in scopes:
        out |= IMPLIED.get(s, frozenset())
    return frozenset(out)


def _names(values: Iterable[str] | None) -> str:
    return "(none)" if values is None else ", ".join(list(values)[:8]) or "(none)"


@dataclass(frozen=True, slots=True)
class Principal:
    """A publisher through one token."""

    publisher_id: int
    publisher: str
    token_id: int
    scopes: frozenset[str]
    namespaces: tuple[str, ...] | None  # None: no list (every namespace); (): none

    @property
    def is_admin(self) -> bool:
        """Has the admin scope (for some namespaces: see ``may_admin``/``is_global_admin``)."""
        return "admin" in self.scopes

    @property
    def is_global_admin(self) -> bool:
        """An admin token with no namespace list: the only one with registry-wide powers."""
        return self.is_admin and self.namespaces is None

    @property
    def may_write(self) -> bool:
        return bool(WRITE_SCOPES & self.scopes)

    @property
    def may_read(self) -> bool:
        return bool(READ_SCOPES & self.scopes)

    def covers(self, namespace: str) -> bool:
        """Whether the token's namespace list includes ``namespace`` (no list: every one; ``[]``: none)."""
        # namespaces are unique by their case-folded name (registry.names.name_key)
        return self.namespaces is None or namespace.lower() in {n.lower() for n in self.namespaces}

    def may_admin(self, namespace: str) -> bool:
        """Admin scope for ``namespace``: curate, policies, pointers and publishing without membership."""
        return self.is_admin and self.covers(namespace)

    def require_admin_of(self, namespace: str, what: str) -> None:
        """Forbidden unless the token has the admin scope for ``namespace``."""
        if not self.is_admin:
            raise Forbidden(f"{what} needs a token with the admin scope", namespace=namespace)
        if not self.covers(namespace):
            raise Forbidden(
                f"{what} needs the admin scope for namespace {namespace!r}; this token's admin scope is"
                f" limited to namespaces {_names(self.namespaces)}",
                namespace=namespace,
            )

    def require_global_admin(self, what: str) -> None:
        """Forbidden unless the token is a global admin (admin scope, no namespace list)."""
        if not self.is_admin:
            raise Forbidden(f"{what} needs a token with the admin scope")
        if self.namespaces is not None:
            raise Forbidden(
                f"{what} needs a global admin token (admin scope, no namespace list); this one is limited"
                f" to namespaces {_names(self.namespaces)}"
            )

    def check_mint(self, publisher: str, scopes: Iterable[str], namespaces: Iterable[str] | None) -> None:
        """Forbidden unless this token may issue one with these fields: never one broader than itself."""
        if not self.is_admin:
            raise Forbidden("issuing tokens needs a token with the admin scope")
        if self.is_global_admin:
            return
        if publisher != self.publisher:
            raise Forbidden(
                f"a namespace admin token issues tokens for its own publisher {self.publisher!r} only;"
                f" {publisher[:64]!r} needs a global admin token",
                publisher=publisher[:64],
            )
        extra = sorted(effective(scopes) - effective(self.scopes))
        if extra:
            raise Forbidden(
                f"the new token cannot have scope {extra[0]!r}: this token lacks it", scope=extra[0]
            )
        if namespaces is None:
            raise Forbidden(
                f"a namespace admin token issues tokens limited to its namespaces ({_names(self.namespaces)});"
                " give the namespaces"
            )
        outside = [n for n in namespaces if not self.covers(n)]
        if outside:
            raise Forbidden(
                f"the new token cannot cover namespace {outside[0][:64]!r}: this token is limited to"
                f" {_names(self.namespaces)}",
                namespace=outside[0][:64],
            )

    def may_revoke(self, token_id: int, publisher_id: int, namespaces: Iterable[str] | None) -> bool:
        """Its own token always; its publisher's tokens with a write scope; any for a global admin; a token
        whose namespace list is a non-empty part of this admin token's namespaces."""
        if token_id == self.token_id or self.is_global_admin:
            return True
        if publisher_id == self.publisher_id and self.may_write:
            return True
        if not self.is_admin or namespaces is None:
            return False
        listed = list(namespaces)
        return bool(listed) and all(self.covers(n) for n in listed)
