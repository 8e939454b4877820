"""``deploy/prometheus/alerts.yml`` names only series the daemon exports, and covers what operators page on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from registry.app.daemon import build_app
from registry.settings import Settings
from tests.registry.metrics.scrape import scrape

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"
# PromQL words that are not series names: aggregation modifiers, set and comparison operators.
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:])\d[A-Za-z0-9_.]*")  # 0.99, 1e3, 5m (after offset)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def series_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels and durations left out)."""
    rest = _STRING.sub('""', expr)
    rest = _MATCHERS.sub(" ", rest)
    rest = _RANGE.sub(" ", rest)
    rest = _GROUPING.sub(" ", rest)
    rest = _NUMBER.sub(" ", rest)
    names = set()
    for m in _IDENT.finditer(rest):
        word = m.group()
        if word in KEYWORDS or rest[m.end() :].lstrip().startswith("("):
            continue  # a keyword, or a function call
        names.add(word)
    return names


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_the_expression_reader_finds_series_and_skips_the_rest() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route!~"x|y"}[5m]))) > 2 '
        "and on (node) max without (kind) (b) / c_total offset 5m"
    )
    assert series_names(expr) == {"a_bucket", "b", "c_total"}


def test_every_rule_is_well_formed() -> None:
    seen = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Modelpack[A-Za-z0-9]+", rule["alert"]) and rule["alert"] not in seen
        seen.add(rule["alert"])
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]
        assert series_names(rule["expr"]), rule["alert"]
    for wanted in ("ReplicationBelowTarget", "JobQueueOld", "ValidationFailures", "High5xxRate"):
        assert f"Modelpack{wanted}" in seen


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # names, not data: one database suffices
async def test_every_alert_names_only_series_the_daemon_exports(settings: Settings) -> None:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    async with TestClient(TestServer(build_app(settings))) as client:
        exported = (await scrape(client)).exported_names()
    assert {"modelpack_http_requests_total", "modelpack_validations_total", "process_open_fds"} <= exported
    unknown = {rule["alert"]: series_names(rule["expr"]) - exported for rule in rules()}
    assert {alert: names for alert, names in unknown.items() if names} == {}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) is not installed here")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
