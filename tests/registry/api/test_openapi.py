"""The OpenAPI document is generated from the routes' declarations, and ``schemathesis run --checks all``
against a live daemon finds nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.format.pack import ManifestLimits, load_manifest
from registry.api import formats
from registry.api.endpoint import spec_of
from registry.api.openapi import build_document, operations
from registry.ipns.name import parse_ipns_name
from registry.names import check_name, check_tag, normalize_cid
from registry.settings import Settings
from registry.trust.keys import parse_public_key
from tests.registry.api import helpers
from tests.registry.api.conftest import Registry
from tests.registry.api.live import LiveServer
from tests.registry.api.schemathesis_hooks import is_semantic_refusal

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES_PER_OPERATION = 10
SEED = 20240611


async def test_every_route_is_declared_and_the_served_document_is_built_from_them(reg: Registry) -> None:
    app = reg.client.app
    undeclared = {
        (route.method, route.resource.canonical if route.resource else "")
        for route in app.router.routes()
        if route.method != "HEAD" and spec_of(route.handler) is None
    }
    # /ipfs: the gateway; /psa: the Pinning Service API, whose document is its own spec (registry/api/psa.py);
    # / and /ui/: the HTML pages for people (registry/web); /api/ and /{namespace}/{model}/resolve/: the
    # Hugging Face Hub read API (registry/api/hfhub.py), a foreign API like /psa
    web = {path for _, path in undeclared if path == "/" or path.startswith("/ui/")}
    foreign = ("/ipfs/", "/psa/", "/api/", "/{namespace}/{model}/resolve/")
    assert {path for _, path in undeclared if not path.startswith(foreign)} == web
    ops = operations(app)
    assert len({spec.operation_id for _, _, spec in ops}) == len(ops)
    r = await reg.client.get("/openapi.json")
    doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    assert doc == json.loads(json.dumps(build_document(app)))
    assert sum(len(v) for v in doc["paths"].values()) == len(ops)
    pub = doc["paths"]["/v1/models/{namespace}/{model}/packs"]["post"]
    manifest = doc["components"]["schemas"]["PublishIn"]["properties"]["manifest"]
    assert pub["security"] == [{"bearer": []}] and "422" in pub["responses"]
    assert manifest["properties"]["shards"]["maxItems"] == ManifestLimits().max_shards
    limit = next(p for p in doc["paths"]["/v1/models"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}
    headers = doc["paths"]["/ipns/{name}"]["get"]["parameters"]
    assert any(p["name"] == "Accept" and p["in"] == "header" and p["required"] for p in headers)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(
    cid=st.from_regex(formats.CID, fullmatch=True),
    ipns=st.from_regex(formats.IPNS_NAME, fullmatch=True),
    key=st.from_regex(formats.PUBLIC_KEY, fullmatch=True),
    name=st.from_regex(formats.NAME, fullmatch=True),
    tag=st.from_regex(formats.TAG, fullmatch=True),
)
def test_every_string_the_documented_patterns_match_is_accepted(
    cid: str, ipns: str, key: str, name: str, tag: str
) -> None:
    normalize_cid(cid)
    parse_ipns_name(ipns)
    parse_public_key(key)
    check_name(name)
    check_tag(tag)


def test_the_documented_manifest_refuses_keys_the_loader_refuses() -> None:
    from registry.api.schemas import _collisions

    collide = re.compile(_collisions())
    assert collide.fullmatch("Model-Name") and collide.fullmatch("_format") and collide.fullmatch("CONFIG")
    assert not collide.fullmatch("model_name") and not collide.fullmatch("extra")
    base = helpers.manifest([("model-00001-of-00001.safetensors", b"x")])
    load_manifest(base | {"extra": 1})
    with pytest.raises(Exception, match="collides"):
        load_manifest(base | {"Model-Name": "x"})


def test_the_hook_drops_only_the_refusals_no_schema_can_state() -> None:
    cursor = {
        "code": "bad_request",
        "message": "cursor 'x' is not one this API returned",
        "details": {"cursor": "x"},
    }
    assert is_semantic_refusal("listModels", 400, cursor)
    assert not is_semantic_refusal("listModels", 400, {"code": "bad_request", "details": {"limit": "0"}})
    assert not is_semantic_refusal("listModels", 400, {"code": "invalid_name", "details": {"name": ""}})
    dup = {"code": "invalid_manifest", "message": "shard filename 'a' is listed twice"}
    assert is_semantic_refusal("publishPack", 422, dup)
    bad_cid = {"code": "invalid_manifest", "message": "manifest field shards.0.cid: '0' is not a valid CID"}
    assert not is_semantic_refusal("publishPack", 422, bad_cid)
    assert not is_semantic_refusal("putBlob", 400, {"code": "invalid_cid"})
    assert is_semantic_refusal("publishPack", 422, {"code": "model_name_mismatch"})
    assert not is_semantic_refusal("listModels", 422, {"code": "model_name_mismatch"})


def _findings(out: str) -> str:
    """The run's FAILURES section, long lines cut (generated bodies can be huge)."""
    section = out[out.find("= FAILURES =") : out.find("= WARNINGS =")]
    return "\n".join(line[:300] for line in section.splitlines())[:12000]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schemathesis_with_all_checks_finds_nothing(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"workers": 0})})
    with LiveServer(settings) as srv:
        alice = srv.run(helpers.token(srv.app, "alice", ["acme"]))
        # revoking tokens goes through a token of its own, so the run never revokes the one it uses
        bob = srv.run(helpers.token(srv.app, "bob", ["bobs"]))
        shard = ("model-00001-of-00001.safetensors", b"0123456789")
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {alice}"
        assert session.put(f"{srv.url}/v1/blobs/{helpers.cid_of(shard[1])}", data=shard[1]).status_code == 201
        body = {"manifest": helpers.manifest([shard])}
        assert session.post(f"{srv.url}/v1/models/acme/tiny/packs", json=body).status_code == 201
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            '[[operations]]\ninclude-operation-id = "revokeToken"\n'
            f'headers = {{ Authorization = "Bearer {bob}" }}\n'
        )
        env = os.environ | {
            "SCHEMATHESIS_HOOKS": "tests.registry.api.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
        }
        cmd = [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(config),
            "run",
            f"{srv.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {alice}",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
            "--exclude-operation-id",
            "streamEvents",  # an endless stream: tests/registry/events/ read it
        ]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540)
        out = done.stdout + done.stderr
        assert done.returncode == 0, _findings(out)
        selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", out)
        assert selected, out[-4000:]
        chosen, total, tested = (int(g) for g in selected.groups())
        assert chosen == tested == total - 1, out[-4000:]  # every operation but the excluded stream
        assert re.search(r"(\d+) generated, \1 passed", out), out[-4000:]
