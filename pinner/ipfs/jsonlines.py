"""Untrusted JSON from nodes, parsed in bounded work: NDJSON lines split in linear time, nesting capped.

A node can trickle a stream one byte at a time, send one endless line, or nest arrays 100,000 deep.
`LineReader` copies each byte a constant number of times however the stream is cut (no re-joining of
the whole buffer per chunk) and refuses a line longer than its limit; `loads` parses JSON and refuses
nesting deeper than `MAX_JSON_DEPTH` (or deep enough to exhaust the stack) with `JsonShapeError`.
Both raise plain `ValueError` subclasses; `pinner.ipfs.http` maps them to typed node errors.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 64  # no node API answer nests anywhere near this deep


class JsonShapeError(ValueError):
    """The bytes are not JSON this client accepts (malformed, or nested too deep)."""


class LineTooLongError(ValueError):
    """An NDJSON line grew past the reader's limit."""


def loads(body: bytes | bytearray | str) -> Any:
    """`json.loads`, with nesting deeper than `MAX_JSON_DEPTH` refused as `JsonShapeError`."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise JsonShapeError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise JsonShapeError(f"not JSON: {exc}") from None
    if isinstance(value, dict | list) and _may_nest_deeply(body):
        check_depth(value)
    return value


def _may_nest_deeply(body: bytes | bytearray | str) -> bool:
    """False when the text cannot hold `MAX_JSON_DEPTH` nested containers (skips the walk for most)."""
    if isinstance(body, str):
        return body.count("[") + body.count("{") > MAX_JSON_DEPTH
    return body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """`JsonShapeError` when containers nest deeper than `limit`; iterative, so any depth is safe."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise JsonShapeError(f"JSON nested deeper than {limit} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


class LineReader:
    """Splits a byte stream into lines in linear time; `copied` counts the bytes it copied.

    Each byte is copied at most twice (into the pending partial line, then out as that line), so a
    stream cut into N pieces costs O(total bytes), never O(N x buffer).
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.copied = 0
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines `chunk` completes (without their newline); the rest waits for the next chunk."""
        out: list[bytes] = []
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            out.append(self._take(chunk, start, nl))
            start = nl + 1
        self._keep(chunk, start, len(chunk))
        return out

    def finish(self) -> bytes:
        """What is left after the last newline (a final line without one)."""
        line = bytes(self._pending)
        self.copied += len(line)
        self._pending.clear()
        return line

    def _check(self, extra: int) -> None:
        if len(self._pending) + extra > self.limit:
            raise LineTooLongError(f"a JSON line is over {self.limit} bytes")

    def _keep(self, chunk: bytes, start: int, end: int) -> None:
        if end > start:
            self._check(end - start)
            self._pending += memoryview(chunk)[start:end]
            self.copied += end - start

    def _take(self, chunk: bytes, start: int, end: int) -> bytes:
        if not self._pending:  # the whole line is inside this chunk
            self._check(end - start)
            self.copied += end - start
            return chunk[start:end]
        self._keep(chunk, start, end)
        return self.finish()
