"""Loads the js-ipfs peers plugin for these tests unless tests/conftest.py already registered it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PLUGIN = "tests.ipfs_testnode.plugin"
ROOT = Path(__file__).resolve().parents[3]


def pytest_configure(config: pytest.Config) -> None:
    if str(ROOT) not in sys.path:  # `tests` is importable only from the repo root
        sys.path.insert(0, str(ROOT))
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)
