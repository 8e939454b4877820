"""The sandbox worker's default torch thread count: no more threads than idle CPUs."""

from __future__ import annotations

import os

import pytest

from model_core.worker import SMALL_PACK_BYTES, auto_threads, default_threads

BIG = 270 * 1024 * 1024


def test_tiny_packs_get_one_thread() -> None:
    assert default_threads(SMALL_PACK_BYTES - 1, current=16, cpus=16, busy_cpus=0.0) == 1


@pytest.mark.parametrize(
    ("cpus", "busy", "want"),
    [
        (2, 0.0, 2),  # idle: every CPU
        (2, 1.0, 2),  # the load is this process itself
        (2, 1.6, 1),  # a busy 2-core box: one thread, no spin-waiting on a shared core
        (2, 6.0, 1),  # overloaded: still at least one
        (16, 4.0, 13),
    ],
)
def test_threads_follow_idle_cpus(cpus: int, busy: float, want: int) -> None:
    assert default_threads(BIG, current=64, cpus=cpus, busy_cpus=busy) == want


def test_never_more_than_torch_would_use() -> None:
    assert default_threads(BIG, current=4, cpus=16, busy_cpus=0.0) == 4


@pytest.mark.parametrize("load", [0.0, 0.6, 1.5, 100.0])
def test_auto_threads_reads_affinity_and_load(monkeypatch: pytest.MonkeyPatch, load: float) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    cpus = len(os.sched_getaffinity(0))
    busy = load * cpus / max(os.cpu_count() or 1, cpus)
    got = auto_threads(BIG, current=1024)
    assert got == default_threads(BIG, current=1024, cpus=cpus, busy_cpus=busy)
    if load >= 100:  # every CPU busy: one thread
        assert got == 1
