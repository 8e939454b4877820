"""The Hugging Face Hub read API's model: a revision of ``ns/model`` resolved to one available pack, its files as
the Hub describes them, the commit id the clients cache under, and the Hub's error shape.

A revision is a pointer tag (``latest``, ``curated``, any tag; ``main``, the clients' default, is the ``main``
pointer when the model has one, else ``latest``), a pack CID, or the 40-hex commit id this API hands out for a
pack: ``sha1(cid)``, so a commit id always names the same content and maps back to it within the model. A pack
that is not ``available`` or later (``received``, ``rejected``) is no revision at all.

Every file is described as a Git LFS file (``lfs.sha256``/``lfs.size``; its ``oid`` is the git blob id of its LFS
pointer file): each one's sha256 is known and verified, while the git blob id of its bytes is not.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web
from sqlalchemy import select

from model_core.errors import q
from pinner.content_errors import InvalidCid
from registry.api.auth import read_gate
from registry.api.keys import SESSIONS
from registry.db.engine import readonly_session
from registry.db.listings import listing_in
from registry.db.models import Model, Namespace, Pack, PackState, Pointer, Shard
from registry.errors import Forbidden, InvalidName, NotFound, RegistryError, Unauthorized
from registry.names import DEFAULT_TAG, ModelRef, check_name, check_tag, normalize_cid
from registry.packs.pointers import model_id_of

COMMIT_RE: Final = re.compile(r"^[0-9a-f]{40}$")
HUB_DEFAULT_REVISION: Final = "main"
NOT_SERVED: Final = (PackState.RECEIVED, PackState.REJECTED)
MESSAGE_MAX: Final = 300  # characters of an error message (headers and body)
# The Hub's own wording: the client tells a bad token from "not found or gated" by this exact message.
INVALID_CREDENTIALS: Final = "Invalid credentials in Authorization header"


class HubError(Exception):
    """An error the Hugging Face clients understand: a status, an ``X-Error-Code`` and a message."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def response(self) -> web.Response:
        return hub_error(self.status, self.message, self.code, self.headers)


def _header_safe(text: str) -> str:
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return clean if len(clean) <= MESSAGE_MAX else clean[: MESSAGE_MAX - 3] + "..."


def hub_error(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """The Hub's error shape: ``{"error": message}`` with ``X-Error-Code`` / ``X-Error-Message`` headers."""
    msg = _header_safe(message)
    out = {"X-Error-Message": msg, **(headers or {})}
    if code:
        out["X-Error-Code"] = code
    return web.Response(
        status=status, text=json.dumps({"error": msg}), content_type="application/json", headers=out
    )


def repo_not_found(repo: str) -> HubError:
    return HubError(404, f"Repository {q(repo, 120)} not found", "RepoNotFound")


def revision_not_found(repo: str, revision: str, why: str) -> HubError:
    return HubError(404, f"Invalid rev id: {q(revision, 100)} in {repo}: {why}", "RevisionNotFound")


def commit_of(cid: str) -> str:
    """The 40-hex commit id the clients cache a pack under (``sha1`` of its CID's text)."""
    return hashlib.sha1(cid.encode("ascii"), usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def iso(at: datetime) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class HubFile:
    filename: str
    size: int
    sha256: str
    cid: str  # the file's UnixFS root in the blockstore
    role: str  # "shard" (weights) | "file"

    def lfs(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "pointerSize": len(lfs_pointer(self.sha256, self.size)),
        }

    @property
    def oid(self) -> str:
        return git_blob_id(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True, slots=True)
class HubRevision:
    ref: ModelRef  # as the model was created (its case)
    revision: str  # as asked
    cid: str
    state: str
    commit: str
    immutable: bool  # asked by commit id or CID: the answer never changes
    created_at: datetime  # the pack listing's
    model_created_at: datetime
    files: tuple[HubFile, ...]

    @property
    def repo_id(self) -> str:
        return str(self.ref)

    def file(self, filename: str) -> HubFile:
        for f in self.files:
            if f.filename == filename:
                return f
        raise HubError(
            404,
            f"{q(filename, 120)} does not exist in {self.repo_id} at revision {self.revision} (pack {self.cid})",
            "EntryNotFound",
            {"X-Repo-Commit": self.commit},
        )


def repo_ref(ns: str, model: str) -> ModelRef:
    """``ns/model`` from the URL; a bad one is a Hub-shaped 400 naming it."""
    try:
        return ModelRef(check_name(ns, "namespace"), check_name(model, "model name"))
    except InvalidName as e:
        raise HubError(400, f"Invalid repo id {q(f'{ns}/{model}', 120)}: {e.message}") from None


async def hub_read_gate(request: web.Request) -> None:
    """``server.read_requires_token`` with the Hub's semantics: no token -> 401 GatedRepo; a token that is not
    valid -> 401 with the Hub's "invalid credentials" message; no read scope -> 403 GatedRepo."""
    try:
        await read_gate(request)
    except Unauthorized as e:
        if e.details.get("reason") == "missing":
            raise HubError(
                401,
                "Access to this registry is restricted: you must be authenticated to read it "
                "(set HF_TOKEN to a modelpack API token)",
                "GatedRepo",
            ) from None
        raise HubError(401, INVALID_CREDENTIALS) from None
    except Forbidden as e:
        raise HubError(403, f"Access restricted: {e.message}", "GatedRepo") from None


async def resolve_revision(request: web.Request, ref: ModelRef, revision: str) -> HubRevision:
    """``ref`` at ``revision`` -> the available (or later) pack it names, with its files."""
    sessions = request.app[SESSIONS]
    async with readonly_session(sessions) as s:
        mid = await model_id_of(s, ref)
        if mid is None:
            raise repo_not_found(str(ref))
        ns, name, model_created = (
            await s.execute(
                select(Namespace.name, Model.name, Model.created_at)
                .join(Namespace, Namespace.id == Model.namespace_id)
                .where(Model.id == mid)
            )
        ).one()
        shown = ModelRef(ns, name)
        pack, immutable = await _pick(s, mid, shown, revision)
        if pack.state in NOT_SERVED:
            raise revision_not_found(
                str(shown), revision, f"pack {pack.cid} is {pack.state.value}, not available"
            )
        rows = (
            await s.execute(select(Shard).where(Shard.pack_cid == pack.cid).order_by(Shard.position))
        ).scalars()
        files = tuple(HubFile(r.filename, r.size, r.sha256, r.cid, r.role) for r in rows)
        return HubRevision(
            shown,
            revision,
            pack.cid,
            pack.state.value,
            commit_of(pack.cid),
            immutable,
            pack.created_at,
            model_created,
            files,
        )


async def _pick(s: Any, mid: int, ref: ModelRef, revision: str) -> tuple[Pack, bool]:
    """The listing ``revision`` names in the model, and whether the name is immutable (commit id, CID)."""
    repo = str(ref)
    if COMMIT_RE.fullmatch(revision):
        cids = (await s.execute(select(Pack.cid).where(Pack.model_id == mid))).scalars()
        match = next((c for c in cids if commit_of(c) == revision), None)
        if match is None:
            raise revision_not_found(repo, revision, "no pack of this model has that commit id")
        pack = await listing_in(s, mid, match)
        assert pack is not None
        return pack, True
    try:
        cid: str | None = normalize_cid(revision)
    except (InvalidCid, ValueError):
        cid = None
    if cid is not None:
        pack = await listing_in(s, mid, cid)
        if pack is None:
            raise revision_not_found(repo, revision, "no such pack in this model")
        return pack, True
    try:
        tag = check_tag(revision)
    except InvalidName:
        raise revision_not_found(repo, revision, "neither a pointer tag, a pack id nor a commit id") from None
    tags = [tag, DEFAULT_TAG] if tag == HUB_DEFAULT_REVISION else [tag]
    for t in tags:
        target = (
            await s.execute(select(Pointer.pack_cid).where(Pointer.model_id == mid, Pointer.tag == t))
        ).scalar_one_or_none()
        if target is not None:
            pack = await listing_in(s, mid, target)
            if pack is not None:
                return pack, False
    raise revision_not_found(repo, revision, "no pointer with that tag")


def translate(e: Exception) -> HubError:
    """A registry error raised under a Hub route, in the Hub's shape."""
    if isinstance(e, HubError):
        return e
    status = getattr(type(e), "http_status", None)  # RegistryError, PinnerError (the blockstore's)
    if isinstance(e, NotFound | RegistryError) or isinstance(status, int):
        return HubError(int(status or 500), str(getattr(e, "message", e)))
    raise e


__all__ = [
    "HUB_DEFAULT_REVISION",
    "HubError",
    "HubFile",
    "HubRevision",
    "commit_of",
    "hub_error",
    "hub_read_gate",
    "iso",
    "repo_ref",
    "resolve_revision",
    "translate",
]
