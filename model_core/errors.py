"""model_core's root exception and its typed subclasses.

Each subclass's docstring is its default message; ``code`` is stable and machine-readable, and the
sandbox turns the class into a verdict (an invalid pack, a failed smoke check, a too-long sequence).
"""

from __future__ import annotations

from typing import Any, ClassVar


class ModelCoreError(Exception):
    """The model core could not complete the operation."""

    code: ClassVar[str] = "model_core_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)


class ConfigInvalid(ModelCoreError):
    """The model configuration is not valid."""

    code = "config_invalid"
    http_status = 422

    def __init__(self, message: str | None = None, *, field: str = "", value: Any = None) -> None:
        super().__init__(message, field=field, value=value)
        self.field = field
        self.value = value


class SequenceTooLong(ModelCoreError):
    """The sequence is longer than the model's max_seq_len."""

    code = "sequence_too_long"
    http_status = 422

    def __init__(self, length: int, max_seq_len: int, what: str = "sequence") -> None:
        super().__init__(
            f"{what} length {length} exceeds max_seq_len {max_seq_len}; "
            "shorten the input or use a model with a larger max_seq_len",
            length=length,
            max_seq_len=max_seq_len,
        )
        self.length = length
        self.max_seq_len = max_seq_len


class PackInvalid(ModelCoreError):
    """The pack is not a valid ModelPack."""

    code = "invalid_pack"
    http_status = 422

    def __init__(
        self, message: str | None = None, *, shard: str | None = None, key: str | None = None
    ) -> None:
        super().__init__(message, shard=shard, key=key)
        self.shard = shard
        self.key = key


class PackTooLarge(PackInvalid):
    """The pack needs more memory than the validation budget allows."""

    code = "pack_too_large"
    http_status = 413

    def __init__(self, needed_bytes: int, budget_bytes: int) -> None:
        super().__init__(
            f"the pack needs about {needed_bytes} bytes of memory to validate, "
            f"more than the budget of {budget_bytes} bytes"
        )
        self.needed_bytes = needed_bytes
        self.budget_bytes = budget_bytes
