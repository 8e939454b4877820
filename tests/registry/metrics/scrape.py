"""Reading ``GET /metrics`` in tests: every sample by (name, labels), and the names of every exported series."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


@dataclass(frozen=True)
class Scrape:
    text: str
    samples: dict[Key, float]
    types: dict[str, str]  # family name -> type

    def get(self, name: str, **labels: str) -> float:
        """The sample's value, 0.0 when the series does not exist yet (a counter not yet incremented)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(labels)[label] for labels in self.series(name) if label in dict(labels)}

    def exported_names(self) -> set[str]:
        """Every series name a query may use: gauges by name, counters and histograms with their suffixes."""
        out = set()
        for family, kind in self.types.items():
            out.update(family + s for s in SUFFIXES.get(kind, ("",)))
        return out


def parse(text: str) -> Scrape:
    samples: dict[Key, float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return Scrape(text, samples, types)


async def scrape(client: TestClient, headers: dict[str, str] | None = None) -> Scrape:
    r = await client.get("/metrics", headers=headers)
    text = await r.text()
    assert r.status == 200, text
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    return parse(text)
