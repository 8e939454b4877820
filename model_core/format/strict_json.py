"""JSON decoding strict enough for hostile input: bounded size, UTF-8, no duplicate keys, no NaN, bounded depth."""

from __future__ import annotations

import json
from typing import Any

from model_core.format.errors import InvalidManifest, ManifestTooLarge


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidManifest(f"the key {k!r} appears twice in one object", field=k)
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise InvalidManifest(f"{name} is not a JSON number", field="")


def parse_json_strict(raw: bytes, *, max_bytes: int, max_depth: int, what: str = "manifest") -> Any:
    """Decode JSON bytes refusing oversize bodies, bad UTF-8, duplicate keys, NaN and deep nesting.

    Raises:
        ManifestTooLarge: more than ``max_bytes``.
        InvalidManifest: anything else, in one sentence naming ``what``.
    """
    if len(raw) > max_bytes:
        raise ManifestTooLarge(
            f"the {what} is {len(raw)} bytes, more than the limit of {max_bytes}", size=len(raw)
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidManifest(f"the {what} is not UTF-8: {e.reason} at byte {e.start}") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidManifest(f"the {what} nests deeper than {max_depth} levels", depth=max_depth) from None
    except json.JSONDecodeError as e:
        raise InvalidManifest(
            f"the {what} is not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except ValueError:
        # Python refuses integers of more than 4,300 digits (sys.get_int_max_str_digits) with a bare ValueError.
        raise InvalidManifest(f"the {what} has a number too long to read (over 4,300 digits)") from None
    return data
