"""#13: an ``hf-llama`` pack whose ``config.json`` the core cannot express is refused at publish (422, the field
and its value named, nothing stored), as ``modelpack import hf`` refuses it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.registry.api import helpers
from tests.registry.api.conftest import Registry

SHARDS = [("model.safetensors", helpers.shard_bytes(4000, 3))]
GOOD = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 128,
    "hidden_act": "silu",
}


async def _publish(reg: Registry, config: bytes | None, **extra: Any) -> Any:
    files = [("config.json", config)] if config is not None else []
    for _, data in SHARDS + files:
        r = await helpers.upload(reg.client, reg.alice, data)
        assert r.status in (200, 201), await r.text()
    manifest = helpers.manifest(
        SHARDS, files=[helpers.shard_entry(n, d) for n, d in files], layout="hf-llama", **extra
    )
    return await helpers.publish(reg.client, reg.alice, "acme/tiny", {"manifest": manifest})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"attention_bias": True}, "attention_bias"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
        ({"architectures": ["GPT2LMHeadModel"]}, "GPT2LMHeadModel"),
    ],
)
async def test_a_config_the_core_cannot_run_is_refused_naming_the_field(
    reg: Registry, change: dict[str, Any], words: str
) -> None:
    before = await helpers.counts(reg.client)
    r = await _publish(reg, json.dumps(GOOD | change).encode())
    body = (await r.json())["error"]
    assert r.status == 422 and body["code"] == "invalid_manifest", body
    assert words in body["message"] and "config.json" in body["message"]
    assert body["details"]["field"] == "files[0]"
    assert await helpers.counts(reg.client) == before


async def test_an_hf_pack_without_config_json_or_with_garbage_in_it_is_refused(reg: Registry) -> None:
    r = await _publish(reg, None)
    body = (await r.json())["error"]
    assert r.status == 422 and "must list config.json" in body["message"]
    r = await _publish(reg, b"{not json")
    body = (await r.json())["error"]
    assert r.status == 422 and "config.json is not JSON" in body["message"]


async def test_a_config_the_core_can_run_publishes(reg: Registry) -> None:
    r = await _publish(reg, json.dumps(GOOD).encode())
    assert r.status == 201, await r.text()
