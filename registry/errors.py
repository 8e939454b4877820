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


class AmbiguousPack(Conflict):
    """The CID is listed under several models: name one with ``?model=ns/name``."""

    code = "ambiguous_pack"
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


class InvalidName(RegistryError):
    """A namespace, model or pointer name has characters or a length that are not allowed."""

    code = "invalid_name"
    http_status = 400

    def __init__(self, message: str | None = None, *, name: str = "", **details: Any) -> None:
        self.name = name
        super().__init__(message, name=name, **details)


class PointerReserved(RegistryError):
    """This pointer is reserved (``curated`` moves only through the validation gate)."""

    code = "pointer_reserved"
    http_status = 403

    def __init__(self, message: str | None = None, *, tag: str = "", **details: Any) -> None:
        self.tag = tag
        super().__init__(message, tag=tag, **details)


class MissingShards(RegistryError):
    """Some shards of the manifest have not been uploaded; upload them, then publish again."""

    code = "missing_shards"
    http_status = 409

    def __init__(
        self, message: str | None = None, *, missing: list[str] | None = None, **details: Any
    ) -> None:
        self.missing = missing or []
        super().__init__(message, missing=self.missing, **details)


class ShardMismatch(RegistryError):
    """A shard's sha256 or size in the manifest differs from the uploaded bytes with that CID."""

    code = "shard_mismatch"
    http_status = 422

    def __init__(self, message: str | None = None, *, filename: str = "", **details: Any) -> None:
        self.filename = filename
        super().__init__(message, filename=filename, **details)


class ModelNameMismatch(RegistryError):
    """The manifest's ``model_name`` is not the model it is published as (a manifest is bound to its model)."""

    code = "model_name_mismatch"
    http_status = 422
