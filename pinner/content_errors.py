"""Errors of content addressing (CIDs, CARs, the blockstore, the gateway), mapped to HTTP by code."""

from __future__ import annotations

from typing import ClassVar

from pinner.errors import PinnerError


class InvalidCid(PinnerError):
    """The CID is malformed or uses an unsupported base, codec or hash function."""

    code: ClassVar[str] = "invalid_cid"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str | None = None, *, cid: str) -> None:
        self.cid = cid
        super().__init__(message, cid=cid)


class BlockNotFound(PinnerError):
    """No block or file with this CID is stored here."""

    code: ClassVar[str] = "not_found"
    http_status: ClassVar[int] = 404


class CorruptBlock(PinnerError):
    """A stored block does not hash to its CID; it was quarantined and is not served."""

    code: ClassVar[str] = "corrupt_block"
    http_status: ClassVar[int] = 500


class InvalidBlock(PinnerError):
    """Bytes offered for a CID do not hash to it, or are not a valid block for its codec."""

    code: ClassVar[str] = "invalid_block"
    http_status: ClassVar[int] = 400


class InvalidCar(PinnerError):
    """The CAR stream is truncated, malformed or holds a block that does not match its CID."""

    code: ClassVar[str] = "invalid_car"
    http_status: ClassVar[int] = 400


class DigestMismatch(PinnerError):
    """The content's CID or sha256 is not the one that was expected."""

    code: ClassVar[str] = "digest_mismatch"
    http_status: ClassVar[int] = 422


class DirectoryTooLarge(PinnerError):
    """The directory would need HAMT sharding, which is not supported yet."""

    code: ClassVar[str] = "directory_too_large"
    http_status: ClassVar[int] = 400


class UnsupportedDag(PinnerError):
    """The DAG is not a UnixFS file this store can read (unknown codec or node type)."""

    code: ClassVar[str] = "unsupported_dag"
    http_status: ClassVar[int] = 400
