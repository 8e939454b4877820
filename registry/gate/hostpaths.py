"""Absolute host paths out of what the API serves from a validation report.

The sandbox's report names its work folder, the pack folder and the files it opened (``/tmp/...``,
``/var/lib/modelpack/blocks/...``). They tell an outsider how the host is laid out and mean nothing to a
reader, so every absolute path becomes ``<host>/`` plus its last segment (the shard's file name stays).
"""

from __future__ import annotations

import re
from typing import Any

# An absolute path of two or more segments, not part of a URL ("http://h/x") or a relative name ("ns/m").
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+~-]+/)+([\w.@+~-]*)")
_MAX_DEPTH = 32


def scrub_text(text: str) -> str:
    """``text`` with every absolute host path shortened to ``<host>/LAST``."""
    if "/" not in text:  # the common case, and no path without one
        return text
    return _ABS_PATH.sub(lambda m: f"<host>/{m.group(1)}", text)


def scrub(value: Any, depth: int = 0) -> Any:
    """A JSON value with host paths scrubbed from every string (keys too)."""
    if isinstance(value, str):
        return scrub_text(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {scrub_text(str(k)): scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, depth + 1) for v in value]
    return value
