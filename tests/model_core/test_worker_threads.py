"""The sandbox worker's default torch thread count: no more threads than idle CPUs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model_core import worker
from model_core.worker import SMALL_PACK_BYTES, BusyMeter, auto_threads, busy_cpus_now, default_threads

BIG = 270 * 1024 * 1024


def test_tiny_packs_get_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_threads(SMALL_PACK_BYTES - 1, current=16, cpus=16, busy_cpus=0.0) == 1

    def measured() -> float:
        raise AssertionError("a tiny pack's thread count needs no quarter second of measuring")

    monkeypatch.setattr(worker, "busy_cpus_now", measured)
    assert auto_threads(SMALL_PACK_BYTES - 1, current=16) == 1


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
def test_without_proc_stat_auto_threads_reads_affinity_and_load(
    monkeypatch: pytest.MonkeyPatch, load: float
) -> None:
    monkeypatch.setattr(worker, "busy_cpus_now", lambda **_: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    cpus = len(os.sched_getaffinity(0))
    busy = load * cpus / max(os.cpu_count() or 1, cpus)
    got = auto_threads(BIG, current=1024)
    assert got == default_threads(BIG, current=1024, cpus=cpus, busy_cpus=busy)
    if load >= 100:  # every CPU busy: one thread
        assert got == 1


@pytest.mark.parametrize("others", [0.0, 0.4, 0.7, 1.0, 100.0])
def test_auto_threads_follows_what_keeps_the_cpus_busy_now(
    monkeypatch: pytest.MonkeyPatch, others: float
) -> None:
    monkeypatch.setattr(worker, "busy_cpus_now", lambda **_: others)
    monkeypatch.setattr(os, "getloadavg", lambda: (100.0, 100.0, 100.0))  # a busy past minute: not used
    cpus = len(os.sched_getaffinity(0))
    busy = (others + 0.5) * cpus / max(os.cpu_count() or 1, cpus)
    got = auto_threads(BIG, current=1024)
    assert got == default_threads(BIG, current=1024, cpus=cpus, busy_cpus=busy)
    if cpus == 2 and os.cpu_count() == 2:  # this machine's shape: the cases the rule is for
        assert got == {0.0: 2, 0.4: 2, 0.7: 1, 1.0: 1, 100.0: 1}[others]


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="busy_cpus_now reads Linux's /proc/stat")
def test_busy_cpus_now_sees_another_process_spinning() -> None:
    spin = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.write('go\\n'); sys.stdout.flush()\nwhile True: pass"],
        stdout=subprocess.PIPE,
    )
    try:
        assert spin.stdout is not None and spin.stdout.readline() == b"go\n"
        busy = busy_cpus_now(window_s=1.0)
        assert busy is not None
        # the spinner keeps most of a core busy whatever else runs (on a loaded 2-core box, well over a third)
        assert busy >= 0.3, busy
    finally:
        spin.kill()
        spin.wait()


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="BusyMeter reads Linux's /proc/stat")
def test_a_meter_started_before_the_load_measures_over_it_and_waits_out_a_short_window() -> None:
    meter = BusyMeter()  # as the worker starts it, before the pack's load
    spin = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.write('go\\n'); sys.stdout.flush()\nwhile True: pass"],
        stdout=subprocess.PIPE,
    )
    try:
        assert spin.stdout is not None and spin.stdout.readline() == b"go\n"
        # the window since the meter started already holds the spinner's start; a minimum window of 1 s
        # is slept out, with the spinner running through it
        busy = busy_cpus_now(window_s=1.0, since=meter)
        assert busy is not None
        assert busy >= 0.3, busy
    finally:
        spin.kill()
        spin.wait()


def test_auto_threads_measures_from_the_meter_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    meter = BusyMeter()
    seen: list[BusyMeter | None] = []

    def busy(**kw: BusyMeter | None) -> float:
        seen.append(kw.get("since"))
        return 0.0

    monkeypatch.setattr(worker, "busy_cpus_now", busy)
    auto_threads(BIG, current=2, since=meter)
    assert seen == [meter]


def test_a_sampling_meter_counts_only_the_latest_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process kept a CPU busy for the first second (the local gate hashing the shards while the
    sandbox starts), then stopped: the quarter second before the question is idle, so that is the answer."""
    meter = BusyMeter()
    t = time.monotonic() - 10  # (machine busy s, own CPU s, time): a second of 1 busy CPU, then idle
    meter._samples.clear()
    meter._samples.extend([(0.0, 0.0, t), (1.0, 0.0, t + 1.0), (1.0, 0.0, t + 1.5), (1.05, 0.05, t + 1.8)])
    monkeypatch.setattr(BusyMeter, "_sample", staticmethod(lambda: (1.1, 0.1, t + 2.0)))
    assert meter.others(min_window_s=0.25) == pytest.approx(0.0, abs=1e-9)
    # over the whole run the same counters say half a CPU: what a meter without samples would answer
    meter._samples.clear()
    meter._samples.append((0.0, 0.0, t))
    assert meter.others(min_window_s=0.25) == pytest.approx(0.5)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="BusyMeter reads Linux's /proc/stat")
def test_a_sampling_meter_stops_when_closed() -> None:
    meter = BusyMeter(every_s=0.01)
    assert meter._thread is not None and meter._thread.is_alive()
    meter.close()
    assert not meter._thread.is_alive()
    assert meter.others(min_window_s=0.0) is not None


@pytest.mark.parametrize("broken", [False, True], ids=["passes", "invalid-pack"])
def test_no_sampling_thread_outlives_the_worker_run(tiny_pack: Path, broken: bool) -> None:
    if broken:
        name = next(p for p in sorted(tiny_pack.iterdir()) if p.suffix == ".safetensors")
        data = bytearray(name.read_bytes())
        data[len(data) // 2] ^= 0x01
        name.write_bytes(data)
    out = tiny_pack.parent / "result.json"
    rc = worker.main([str(tiny_pack), "--result", str(out)])
    assert rc == worker.EXIT_CODES["invalid_pack" if broken else "pass"]
    assert not [t for t in threading.enumerate() if t.name == "busy"]
