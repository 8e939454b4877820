"""The format's errors: a manifest that is not a valid ModelPack manifest, or one over the size limit.

Like every model_core error they carry a stable ``code``, an ``http_status`` and ``details``; the
registry's HTTP edge renders them as it renders its own.
"""

from __future__ import annotations

from typing import Any

from model_core.errors import ModelCoreError


class InvalidManifest(ModelCoreError):
    """The manifest is not a valid ModelPack manifest."""

    code = "invalid_manifest"
    http_status = 422

    def __init__(self, message: str | None = None, *, field: str = "", **details: Any) -> None:
        self.field = field
        super().__init__(message, field=field, **details)


class ManifestTooLarge(InvalidManifest):
    """The manifest is larger than the limit."""

    code = "manifest_too_large"
    http_status = 413
