"""The one shard verifier: do these bytes have the UnixFS CID, sha256 and size a manifest declares?

Used wherever shard bytes are judged: the fetch job (the UnixFS parameters and expected values of its
verified ingest, and the sha256 of bytes already stored), the gate gathering a pack, ``modelpack verify``
and ``modelpack gate`` on a folder, and ``modelpack publish``/``pull``. It takes plain values (CID text,
``Sha256Digest``, size, UnixFS profile) so every caller can state what it expects from its own records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from multiformats import CID

from model_core.format.digest import Sha256Digest
from pinner.cids import parse_cid
from pinner.unixfs import FileDigest, UnixfsParams, hash_file, params_for_cid


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One declared value the bytes do not have."""

    what: str  # "size" | "CID" | "sha256"
    actual: str
    declared: str

    def __str__(self) -> str:
        return f"{self.what} is {self.actual}, but the manifest says {self.declared}"


@dataclass(frozen=True, slots=True)
class ShardCheck:
    """The bytes' digest and every declared value they contradict (none: the shard verifies)."""

    digest: FileDigest
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def first(self) -> str | None:
        """The first contradiction as a sentence, or None."""
        return str(self.mismatches[0]) if self.mismatches else None


def expected_cid(cid: str | CID) -> CID:
    """A declared shard CID as a CID the registry can verify (sha2-256, raw or dag-pb).

    Raises:
        InvalidCid: it is not one.
    """
    return cid if isinstance(cid, CID) else parse_cid(cid)


def unixfs_params(cid: CID, profile: str | None) -> UnixfsParams:
    """How to rebuild ``cid`` from bytes: the named profile, else Kubo's defaults for its version.

    Raises:
        ValueError: an unknown profile name.
    """
    return params_for_cid(cid, profile)


def compare(digest: FileDigest, *, cid: CID | None, sha256: Sha256Digest, size: int | None) -> ShardCheck:
    """``digest`` against the declared values, in the order size, CID, sha256; ``None`` is not checked."""
    out = []
    if size is not None and digest.size != size:
        out.append(Mismatch("size", str(digest.size), str(size)))
    if cid is not None and digest.cid != cid:
        out.append(Mismatch("CID", str(digest.cid), str(cid)))
    if not sha256.matches(digest.sha256_hex):
        out.append(Mismatch("sha256", str(Sha256Digest.of_bytes(digest.sha256)), str(sha256)))
    return ShardCheck(digest, tuple(out))


def verify_file(
    source: Path | BinaryIO,
    *,
    cid: str | CID | None,
    sha256: Sha256Digest,
    size: int | None = None,
    profile: str | None = None,
) -> ShardCheck:
    """Hash a file (or a readable binary stream) once and compare it with the declared values.

    ``cid=None`` skips the CID (the bytes are hashed with default UnixFS parameters).

    Raises:
        InvalidCid: ``cid`` is not a CID the registry can verify.
        ValueError: ``profile`` is unknown.
    """
    want = expected_cid(cid) if cid is not None else None
    params = unixfs_params(want, profile) if want is not None else None
    return compare(hash_file(source, params), cid=want, sha256=sha256, size=size)
