"""The pinner's root exception; subclasses carry typed fields (the CID, the node, the offset)."""

from __future__ import annotations

from typing import Any, ClassVar


class PinnerError(Exception):
    """The pinner could not complete the operation."""

    code: ClassVar[str] = "pinner_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)
