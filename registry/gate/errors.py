"""The gate's errors: subclasses of the registry's root exception, so the API middleware maps them."""

from __future__ import annotations

from typing import Any

from registry.errors import RegistryError


class GateError(RegistryError):
    """The validation gate could not complete the request."""

    code = "gate_error"
    http_status = 500


class ReasonRequired(GateError):
    """A manual curation change needs a reason (it is written to the audit log and the pointer history)."""

    code = "reason_required"
    http_status = 400


class CurationRefused(GateError):
    """The pack cannot be curated or un-curated in its current state."""

    code = "curation_refused"
    http_status = 409

    def __init__(self, message: str | None = None, *, cid: str = "", state: str = "", **details: Any) -> None:
        self.cid = cid
        self.state = state
        super().__init__(message, cid=cid, state=state, **details)


class ValidationQueueFull(GateError):
    """The publisher already has as many validations queued as one publisher may (the slot is shared)."""

    code = "validation_queue_full"
    http_status = 429


class ValidationRefused(GateError):
    """The pack cannot be validated in its current state."""

    code = "validation_refused"
    http_status = 409

    def __init__(self, message: str | None = None, *, cid: str = "", state: str = "", **details: Any) -> None:
        self.cid = cid
        self.state = state
        super().__init__(message, cid=cid, state=state, **details)
