"""Fuzzing the parsers of untrusted bytes (``make fuzz``; FUZZ_EXAMPLES examples each, default 2000).

Marked ``fuzz``: the default run skips these and runs tests/fuzz/test_fuzz_smoke.py (a few examples each).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import TARGETS, Target, check, inputs

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_only_typed_errors_come_out(target: Target) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(inputs(target))
    def run(data: bytes) -> None:
        check(target, data)

    run()
