"""The registry's root exception and its typed subclasses; the API maps them to HTTP in one place.

Each subclass's docstring is its default message; ``code`` is stable and machine-readable.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    """The registry could not complete the request."""

    code: ClassVar[str] = "registry_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)


class ConfigError(RegistryError):
    """The configuration is not valid."""

    code = "bad_config"
    http_status = 500


class BadRequest(RegistryError):
    """The request is malformed."""

    code = "bad_request"
    http_status = 400


class NotFound(RegistryError):
    """No such resource."""

    code = "not_found"
    http_status = 404


class Unauthorized(RegistryError):
    """A valid API token is required."""

    code = "unauthorized"
    http_status = 401


class Forbidden(RegistryError):
    """The token does not allow this."""

    code = "forbidden"
    http_status = 403


class Conflict(RegistryError):
    """The request conflicts with the current state."""

    code = "conflict"
    http_status = 409


class PreconditionFailed(RegistryError):
    """The resource changed since you read it (If-Match did not match)."""

    code = "precondition_failed"
    http_status = 412


class PayloadTooLarge(RegistryError):
    """The request body is larger than the limit."""

    code = "payload_too_large"
    http_status = 413


class DatabaseNotReady(RegistryError):
    """The database is unreachable or its schema is not at the version this code expects."""

    code = "database_not_ready"
    http_status = 503
