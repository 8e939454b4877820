"""``modelpack diff A B`` against a live registry: the fingerprints of two packs' validation reports compared."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from registry.api.keys import SESSIONS
from registry.cli.diff_cmd import diff
from registry.cli.trust_registry_cmd import policy
from registry.db.base import utcnow
from registry.db.models import ValidationReport
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.live import LiveServer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def fingerprint(top1: list[int], vocab: int = 10) -> dict[str, Any]:
    return {
        "scheme": "probe-v1",
        "k": 2,
        "vocab_size": vocab,
        "probe_len": 4,
        "positions": [3],
        "top_ids": [[t, (t + 1) % vocab] for t in top1],
        "top_logprobs": [[math.log(0.9), math.log(0.05)] for _ in top1],
    }


class Live:
    def __init__(self, srv: LiveServer, alice: str) -> None:
        self.srv, self.alice = srv, alice

    def publish(self, seed: int, version: str) -> str:
        shard = ("model-00001-of-00001.safetensors", helpers.shard_bytes(5_000, seed))
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.alice}"
        assert s.put(f"{self.srv.url}/v1/blobs/{helpers.cid_of(shard[1])}", data=shard[1]).status_code in (
            200,
            201,
        )
        r = s.post(
            f"{self.srv.url}/v1/models/acme/tiny/packs",
            json={"manifest": helpers.manifest([shard], version=version)},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["cid"])

    def report(self, cid: str, report: dict[str, Any]) -> None:
        async def write() -> None:
            async with self.srv.app[SESSIONS]() as s, s.begin():
                s.add(
                    ValidationReport(
                        pack_cid=cid, verdict="pass", reason="ok", report=report, finished_at=utcnow()
                    )
                )

        self.srv.run(write())

    def diff(self, *args: str) -> Result:
        env = {"MODELPACK_REGISTRY": self.srv.url, "MODELPACK_TOKEN": self.alice}
        return CliRunner().invoke(diff, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    with LiveServer(settings) as srv:
        yield Live(srv, srv.run(helpers.token(srv.app, "alice", ["acme"])))


def test_diff_prints_the_comparison(live: Live) -> None:
    a, b = live.publish(1, "1.0.0"), live.publish(2, "1.0.1")
    live.report(a, {"verdict": "pass", "fingerprint": fingerprint([1, 2, 3, 4])})
    live.report(b, {"verdict": "pass", "fingerprint": fingerprint([1, 2, 7, 8])})
    out = live.diff(a, b)
    assert out.exit_code == 0, out.output
    assert (
        "top-1 agreement  0.5000" in out.output
        and "mean KL" in out.output
        and "probe rows       4" in out.output
    )
    out = live.diff(a, "acme/tiny@latest", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["a"] == a and data["b"] == b and data["top1_agreement"] == 0.5 and data["rows"] == 4
    assert data["mean_kl"] > 0 and data["max_kl"] >= data["mean_kl"]
    same = json.loads(live.diff(a, a, "--json").output)
    assert same["top1_agreement"] == 1.0 and same["mean_kl"] == 0.0


def test_diff_refuses_what_cannot_be_compared(live: Live) -> None:
    a, b, c = live.publish(1, "1.0.0"), live.publish(2, "1.0.1"), live.publish(3, "1.0.2")
    live.report(a, {"verdict": "pass", "fingerprint": fingerprint([1, 2, 3, 4])})
    out = live.diff(a, b)
    assert out.exit_code == 1 and f"pack {b}" in out.output and "no validation report" in out.output
    live.report(b, {"verdict": "pass", "fingerprint": None, "fingerprint_error": "probe failed: no logits"})
    out = live.diff(a, b)
    assert out.exit_code == 1 and "no behavioural fingerprint: probe failed: no logits" in out.output
    live.report(c, {"verdict": "pass", "fingerprint": fingerprint([1, 2, 3, 4], vocab=12)})
    out = live.diff(a, c)
    assert out.exit_code == 1 and "cannot be compared" in out.output and "vocab_size" in out.output
    out = live.diff(a, "not a ref")
    assert out.exit_code == 2 and "neither" in out.output


def test_policy_set_max_drift_through_the_cli(live: Live) -> None:
    admin = live.srv.run(helpers.token(live.srv.app, "root", scopes=("admin",)))
    env = {"MODELPACK_REGISTRY": live.srv.url, "MODELPACK_TOKEN": admin}
    run = CliRunner()
    out = run.invoke(policy, ["set", "acme", "--max-mean-kl", "0.5", "--min-top1-agreement", "0.9"], env=env)
    assert out.exit_code == 0, out.output
    shown = json.loads(run.invoke(policy, ["show", "acme", "--json"], env=env).output)
    assert shown["max_drift"] == {"min_top1_agreement": 0.9, "max_mean_kl": 0.5}
    out = run.invoke(policy, ["set", "acme", "--min-top1-agreement", "2"], env=env)
    assert (
        out.exit_code == 1
        and "422 invalid_policy" in out.output
        and "max_drift.min_top1_agreement" in out.output
    )
