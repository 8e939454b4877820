"""model_core's root exception and its typed subclasses.

Each subclass's docstring is its default message; ``code`` is stable and machine-readable, and the
sandbox turns the class into a verdict (an invalid pack, a failed smoke check, a too-long sequence).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

# Values copied from input (names, shapes, parser messages) into messages and reports are cut to this,
# and a whole message to MESSAGE_MAX_CHARS, so hostile data is never echoed at full size.
VALUE_MAX_CHARS = 256
MESSAGE_MAX_CHARS = 1024


def bounded(text: object, limit: int = VALUE_MAX_CHARS) -> str:
    """``text`` as a string of at most about ``limit`` characters, saying how much was cut."""
    s = text if isinstance(text, str) else str(text)
    if len(s) <= limit:
        return s
    return f"{s[:limit]}...[{len(s) - limit} more characters]"


def q(value: object, limit: int = VALUE_MAX_CHARS) -> str:
    """A bounded ``repr`` for quoting input in a message."""
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]
        return f"{value!r}...[cut at {limit} characters]"
    return bounded(repr(value), limit)


class ModelCoreError(Exception):
    """The model core could not complete the operation."""

    code: ClassVar[str] = "model_core_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = bounded(message or (self.__doc__ or self.code).strip(), MESSAGE_MAX_CHARS)
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
        shard, key = (None if v is None else bounded(v) for v in (shard, key))
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


REPORT_MAX_BYTES = 16 * 1024
_LONG_FIELDS = {"reason": MESSAGE_MAX_CHARS, "stderr_tail": 4000, "traceback": 3000}
_ESSENTIAL = ("verdict", "reason", "exit_code", "error_code", "signal")


def _bound(value: Any, limit: int, depth: int) -> Any:
    if isinstance(value, str):
        return bounded(value, limit)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= 8:
        return bounded(repr(value), VALUE_MAX_CHARS)
    if isinstance(value, dict):
        items = list(value.items())[:64]
        return {
            bounded(k, 64): _bound(
                v, _LONG_FIELDS.get(k, VALUE_MAX_CHARS) if depth == 0 else limit, depth + 1
            )
            for k, v in items
        }
    if isinstance(value, list | tuple):
        return [_bound(v, limit, depth + 1) for v in list(value)[:64]]
    return bounded(str(value), limit)


def bounded_report(report: dict[str, Any], max_bytes: int = REPORT_MAX_BYTES) -> dict[str, Any]:
    """A validation report with every string cut to a few hundred characters and the whole to ``max_bytes``
    of JSON (beyond that only the verdict and reason are kept)."""
    out: dict[str, Any] = _bound(report, VALUE_MAX_CHARS, 0)
    if len(json.dumps(out, default=str)) <= max_bytes:
        return out
    keep = {k: out[k] for k in _ESSENTIAL if k in out}
    keep["report_truncated"] = f"the full report was larger than {max_bytes} bytes"
    return keep
