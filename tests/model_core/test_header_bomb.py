"""Header bombs (issue #12 item 8): the supervisor never reads a large header, and no echoed value is large."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import pytest

from model_core.errors import MESSAGE_MAX_CHARS, REPORT_MAX_BYTES, PackInvalid, bounded, bounded_report
from model_core.sandbox import SUPERVISOR_HEADER_PARSE_BYTES, SandboxLimits, preflight, validate_pack
from model_core.shard_header import parse_header
from tests.model_core.conftest import reseal, shard_names

LIMITS = SandboxLimits(
    memory_bytes=8 * 1024**3, cpu_seconds=120, wall_seconds=120, time_budget_s=60, threads=1
)
FIVE_MB = 5 * 1024 * 1024


def shard_bytes(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * 4


def bomb(name_len: int) -> bytes:
    return shard_bytes({"n" * name_len: {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 4]}})


def test_a_huge_tensor_name_gives_a_small_reason() -> None:
    data = bomb(FIVE_MB)
    with pytest.raises(PackInvalid) as e:
        parse_header(data, len(data), "a.safetensors", 100_000_000)
    assert "NOPE" in e.value.message and len(e.value.message) <= MESSAGE_MAX_CHARS + 64
    assert e.value.key is not None and len(e.value.key) < 400


def test_bounded_says_how_much_was_cut() -> None:
    assert bounded("short") == "short"
    assert bounded("x" * 1000, 10) == "xxxxxxxxxx...[990 more characters]"
    report = bounded_report({"verdict": "crashed", "reason": "r" * FIVE_MB, "extra": ["y" * 10_000] * 10_000})
    assert len(json.dumps(report)) <= REPORT_MAX_BYTES and report["verdict"] == "crashed"


def test_supervisor_does_not_read_a_huge_header(tiny_pack: Path) -> None:
    shard = shard_names(tiny_pack)[0]
    (tiny_pack / shard).write_bytes(bomb(20 * 1024 * 1024))
    reseal(tiny_pack, shard)
    tracemalloc.start()
    try:
        outcome = preflight(tiny_pack, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome is None  # not refused here: the limited child parses it
    assert peak < 2 * SUPERVISOR_HEADER_PARSE_BYTES + 1024 * 1024, f"the supervisor allocated {peak} bytes"


def test_a_header_bomb_is_parsed_in_the_child_and_reported_small(tiny_pack: Path, tmp_path: Path) -> None:
    shard = shard_names(tiny_pack)[0]
    (tiny_pack / shard).write_bytes(bomb(FIVE_MB))
    reseal(tiny_pack, shard)
    report = validate_pack(tiny_pack, tmp_path / "r.json", LIMITS)
    assert report["verdict"] == "invalid_pack", report["reason"]
    assert "NOPE" in report["reason"] and len(report["reason"]) <= MESSAGE_MAX_CHARS + 64
    assert (tmp_path / "r.json").stat().st_size <= REPORT_MAX_BYTES + 1024
