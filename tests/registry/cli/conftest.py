"""A live registry (no job workers) for the CLI tests that drive it through ``modelpack`` commands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from registry.settings import Settings
from tests.registry.api.live import LiveServer


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    with LiveServer(settings) as srv:
        yield srv
