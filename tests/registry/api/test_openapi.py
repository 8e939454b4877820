"""The OpenAPI document matches the router, and schemathesis finds no 5xx and no schema violation."""

from __future__ import annotations

import json

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from registry.api.openapi import OPERATIONS, build_document
from registry.settings import Settings
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry
from tests.registry.api.live import LiveServer

EXAMPLES_PER_OPERATION = 30


async def test_every_route_is_documented_and_every_documented_route_exists(reg: Registry) -> None:
    served = set()
    for resource in reg.client.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        for route in resource:
            if route.method not in ("HEAD", "*"):
                served.add((route.method.lower(), path))
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert documented - served == set()
    assert {s for s in served if not s[1].startswith("/ipfs")} - documented == set()
    r = await reg.client.get("/openapi.json")
    doc = await r.json()
    assert doc["openapi"].startswith("3.1") and len(doc["paths"]) == len({op.path for op in OPERATIONS})
    assert doc == json.loads(json.dumps(build_document()))


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(settings: Settings) -> None:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    with LiveServer(settings) as srv:
        tok = srv.run(helpers.token(srv.app, "alice", ["acme"]))
        shard = ("model-00001-of-00001.safetensors", b"0123456789")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {tok}"
        r = session.put(f"{srv.url}/v1/blobs/{helpers.cid_of(shard[1])}", data=shard[1])
        assert r.status_code == 201
        r = session.post(f"{srv.url}/v1/models/acme/tiny/packs", json={"manifest": helpers.manifest([shard])})
        assert r.status_code == 201
        schema = schemathesis.openapi.from_dict(build_document(srv.url))
        statuses: list[int] = []
        checks = [
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
        for result in schema.get_all_operations():
            op = result.ok()

            @hypothesis.given(case=op.as_strategy())
            @hypothesis.settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=srv.url, session=session)
                statuses.append(response.status_code)
                case.validate_response(response, checks=checks)

            run()
        # it really exercised the API: many calls, successes and refusals both
        assert len(statuses) >= 5 * len(OPERATIONS), len(statuses)
        assert any(200 <= s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses)
