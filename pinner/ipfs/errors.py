"""Typed failures of IPFS node clients, so the replication service can record *why* a replica failed."""

from __future__ import annotations

from typing import ClassVar

from pinner.errors import PinnerError


class NodeError(PinnerError):
    """The IPFS node answered with an error."""

    code: ClassVar[str] = "node_error"
    http_status: ClassVar[int] = 502

    def __init__(
        self,
        message: str | None = None,
        *,
        node_url: str,
        cid: str | None = None,
        status: int | None = None,
        node_message: str | None = None,
    ) -> None:
        self.node_url = node_url
        self.cid = cid
        self.status = status
        self.node_message = node_message
        super().__init__(message, node_url=node_url, cid=cid, status=status, node_message=node_message)


class NodeUnreachableError(NodeError):
    """The IPFS node could not be reached (connection refused, DNS or TLS failure)."""

    code: ClassVar[str] = "node_unreachable"
    http_status: ClassVar[int] = 502


class NodeTimeoutError(NodeError):
    """The IPFS node did not answer within the configured timeout."""

    code: ClassVar[str] = "node_timeout"
    http_status: ClassVar[int] = 504


class PinStalledError(NodeTimeoutError):
    """The node made no pinning progress within the no-progress timeout."""

    code: ClassVar[str] = "pin_stalled"


class NodeBadResponseError(NodeError):
    """The IPFS node answered something that is not what its API promises (garbage, wrong shape)."""

    code: ClassVar[str] = "node_bad_response"


class NodeNotSupportedError(NodeError):
    """The IPFS node does not offer this endpoint."""

    code: ClassVar[str] = "node_not_supported"
    http_status: ClassVar[int] = 501


class NotPinnedError(NodeError):
    """The node does not pin this CID."""

    code: ClassVar[str] = "not_pinned"
    http_status: ClassVar[int] = 404


class BlockMismatchError(NodeError):
    """The node returned bytes whose hash does not match the CID that was asked for."""

    code: ClassVar[str] = "block_mismatch"
    http_status: ClassVar[int] = 502


class NodeRedirectError(NodeBadResponseError):
    """The IPFS node answered with a redirect; node requests never follow one (it could point anywhere)."""

    code: ClassVar[str] = "node_redirect"


class InvalidNodeUrlError(PinnerError):
    """The node URL is not an http(s) URL with a host, or has userinfo, a query or a fragment."""

    code: ClassVar[str] = "invalid_node_url"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str | None = None, *, node_url: str, part: str | None = None) -> None:
        self.node_url = node_url
        self.part = part
        super().__init__(message, node_url=node_url, **({"part": part} if part else {}))


class PinFailedError(NodeError):
    """The backend reports that pinning failed."""

    code: ClassVar[str] = "pin_failed"
    http_status: ClassVar[int] = 502
