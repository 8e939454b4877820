"""The short fuzz run of the default suite (CI): every parser of untrusted bytes, a few dozen inputs each,
only typed errors out. ``make fuzz`` runs the long one (tests/fuzz/test_fuzz.py)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import NASTY_JSON, TARGETS, Target, check, framed, inputs


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_a_short_fuzz_run(target: Target) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(inputs(target))
    def run(data: bytes) -> None:
        check(target, data)

    run()


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_every_seed_parses(target: Target) -> None:
    for seed in target.seeds:
        target.parse(seed)


@pytest.mark.parametrize(
    "target", [t for t in TARGETS if "json" in t.name or "header" in t.name], ids=lambda t: t.name
)
@pytest.mark.parametrize("raw", NASTY_JSON, ids=range(len(NASTY_JSON)))
def test_known_nasty_json_is_a_typed_error(target: Target, raw: bytes) -> None:
    data = framed(raw) if target.name == "safetensors-header" else raw
    with pytest.raises(target.allowed):
        target.parse(data)
