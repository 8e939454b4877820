"""The manifest's ``files``, ``layout`` and ``evaluation`` fields, and fingerprint comparison: every bad value is
one sentence naming its field; seed manifests are unchanged; two fingerprints compare without torch."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from model_core.format.errors import InvalidManifest
from model_core.format.fingerprint import FingerprintMismatch, compare_fingerprints, row_kl
from model_core.format.pack import ManifestLimits, load_manifest
from model_core.format.probes import probe_inputs, probe_positions
from tests.model_core.behaviour_util import raw_cid
from tests.model_core.test_format import base


def file_entry(name: str, data: bytes = b"x") -> dict[str, Any]:
    return {
        "filename": name,
        "cid": raw_cid(data),
        "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def with_(**fields: Any) -> dict[str, Any]:
    m = base()
    m["config"]["max_seq_len"] = 64
    m.update(copy.deepcopy(fields))
    return m


TOKENIZER = [file_entry("tokenizer.json"), file_entry("reference.txt", b"y")]


def test_a_seed_manifest_is_unchanged_by_the_new_fields() -> None:
    m = base()
    parsed = load_manifest(copy.deepcopy(m))
    assert parsed.doc.files is None and parsed.doc.layout is None and parsed.doc.evaluation is None
    assert parsed.data == m


def test_files_layout_and_evaluation_are_accepted() -> None:
    ev = {
        "prompts": [
            {"text": "The capital of France is", "contains": "Paris", "max_new_tokens": 8},
            {"name": "ids", "token_ids": [1, 2, 3], "expect": [4, 5]},
        ],
        "perplexity": {"file": "reference.txt", "max": 40},
        "eos_token_id": 2,
    }
    parsed = load_manifest(with_(files=TOKENIZER, layout="hf-llama", evaluation=ev))
    doc = parsed.doc
    assert doc.layout == "hf-llama" and [f.filename for f in doc.files or []] == [
        "tokenizer.json",
        "reference.txt",
    ]
    assert doc.evaluation is not None and doc.evaluation.perplexity is not None
    assert doc.evaluation.perplexity.max == 40.0 and doc.evaluation.perplexity.max_tokens == 1024
    assert [p.new_tokens for p in doc.evaluation.prompts] == [8, 2]
    assert json.loads(parsed.canonical) == parsed.data  # validation never rewrites the bytes


BAD: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    (
        "file_reserved",
        lambda: with_(files=[file_entry("manifest.json")]),
        "manifest field files.0.filename: file name 'manifest.json' is reserved",
    ),
    (
        "file_unsafe",
        lambda: with_(files=[file_entry("../README.md")]),
        "manifest field files.0.filename: file name '../README.md' is unsafe",
    ),
    (
        "file_shadows_shard",
        lambda: with_(files=[file_entry(base()["shards"][0]["filename"])]),
        "is listed twice (names are unique across shards and files)",
    ),
    (
        "file_twice",
        lambda: with_(files=[file_entry("a.txt"), file_entry("a.txt")]),
        "file name 'a.txt' is listed twice",
    ),
    ("layout", lambda: with_(layout="gguf"), "manifest field layout: Input should be 'seed' or 'hf-llama'"),
    ("empty", lambda: with_(evaluation={}), "an evaluation needs at least one prompt or a perplexity check"),
    (
        "unknown_key",
        lambda: with_(evaluation={"prompts": [{"token_ids": [1], "expect": [2], "expcet": [2]}]}),
        "manifest field evaluation.prompts.0.expcet: Extra inputs are not permitted",
    ),
    (
        "two_prompts_kinds",
        lambda: with_(evaluation={"prompts": [{"token_ids": [1], "text": "a", "expect": [2]}]}),
        "manifest field evaluation.prompts.0: a prompt needs exactly one of 'text' or 'token_ids'",
    ),
    (
        "no_expectation",
        lambda: with_(evaluation={"prompts": [{"token_ids": [1]}]}),
        "a prompt needs exactly one of 'expect' or 'contains'",
    ),
    (
        "max_new_tokens",
        lambda: with_(evaluation={"prompts": [{"token_ids": [1], "expect": [2], "max_new_tokens": 257}]}),
        "manifest field evaluation.prompts.0.max_new_tokens: Input should be less than or equal to 256",
    ),
    (
        "expect_longer_than_budget",
        lambda: with_(evaluation={"prompts": [{"token_ids": [1], "expect": [2, 3], "max_new_tokens": 1}]}),
        "'expect' lists 2 token ids, more than max_new_tokens (1)",
    ),
    (
        "expect_text_too_long",
        lambda: with_(files=TOKENIZER, evaluation={"prompts": [{"token_ids": [1], "expect": "x" * 1025}]}),
        "an expected text must be 1 to 1024 characters, not 1025",
    ),
    (
        "prompt_past_context",
        lambda: with_(evaluation={"prompts": [{"token_ids": [1] * 60, "expect": [2], "max_new_tokens": 5}]}),
        "evaluation.prompts[0].token_ids: the prompt's 60 tokens plus 5 new tokens exceed the model's "
        "context of 64 tokens",
    ),
    (
        "id_past_vocab",
        lambda: with_(evaluation={"prompts": [{"token_ids": [256], "expect": [2]}]}),
        "evaluation.prompts[0].token_ids: token id 256 is outside the model's vocabulary of 256",
    ),
    (
        "no_tokenizer",
        lambda: with_(evaluation={"prompts": [{"token_ids": [1], "contains": "Paris"}]}),
        "evaluation.prompts[0] needs the pack's tokenizer, but 'tokenizer.json' is not among the "
        "manifest's files",
    ),
    (
        "reference_not_in_pack",
        lambda: with_(files=TOKENIZER[:1], evaluation={"perplexity": {"file": "reference.txt", "max": 9}}),
        "evaluation.perplexity.file 'reference.txt' is not one of the pack's files",
    ),
    (
        "ceiling_below_one",
        lambda: with_(files=TOKENIZER, evaluation={"perplexity": {"file": "reference.txt", "max": 1}}),
        "manifest field evaluation.perplexity.max: Input should be greater than 1",
    ),
    (
        "bool_is_not_an_id",
        lambda: with_(evaluation={"prompts": [{"token_ids": [True], "expect": [2]}]}),
        "manifest field evaluation.prompts.0.token_ids.0: Input should be a valid integer",
    ),
    (
        "too_many_prompts",
        lambda: with_(evaluation={"prompts": [{"token_ids": [1], "expect": [2]}] * 17}),
        "manifest field evaluation.prompts: List should have at most 16 items",
    ),
]


@pytest.mark.parametrize(("make", "needle"), [(m, n) for _, m, n in BAD], ids=[i for i, _, _ in BAD])
def test_bad_values_are_one_sentence_naming_the_field(
    make: Callable[[], dict[str, Any]], needle: str
) -> None:
    with pytest.raises(InvalidManifest) as e:
        load_manifest(make())
    assert needle in e.value.message and "\n" not in e.value.message
    assert e.value.field.split(".")[0].split("[")[0] in ("files", "layout", "evaluation")


def test_file_count_and_sizes_are_limited() -> None:
    with pytest.raises(InvalidManifest, match="lists 3 files, more than the limit of 2"):
        load_manifest(with_(files=[file_entry(f"f{i}") for i in range(3)]), ManifestLimits(max_files=2))
    big = dict(file_entry("big.bin"), size=10**6)
    with pytest.raises(InvalidManifest, match="more than the limit of 100000"):
        load_manifest(with_(files=[big]), ManifestLimits(pack_max_bytes=100_000))


def test_the_new_modules_stay_torch_free() -> None:
    code = (
        "import sys, model_core.format.evaluation, model_core.format.fingerprint\n"
        "print(','.join(m for m in ('torch', 'safetensors', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------- fingerprints


def fingerprint(rows: list[tuple[list[int], list[float]]], vocab: int = 100) -> dict[str, Any]:
    return {
        "scheme": "probe-v1",
        "k": len(rows[0][0]),
        "vocab_size": vocab,
        "probe_len": 16,
        "positions": [3, 7, 11, 15],
        "top_ids": [r[0] for r in rows],
        "top_logprobs": [r[1] for r in rows],
    }


ROW_A = ([1, 2, 3], [math.log(0.5), math.log(0.2), math.log(0.1)])
ROW_B = ([4, 5, 6], [math.log(0.7), math.log(0.1), math.log(0.05)])


def test_identical_fingerprints_agree_fully() -> None:
    fp = fingerprint([ROW_A, ROW_B])
    diff = compare_fingerprints(fp, copy.deepcopy(fp))
    assert (diff.top1_agreement, diff.mean_kl, diff.max_kl, diff.rows) == (1.0, 0.0, 0.0, 2)
    assert diff.to_dict() == {"top1_agreement": 1.0, "mean_kl": 0.0, "max_kl": 0.0, "rows": 2}


def test_a_perturbed_fingerprint_agrees_less_and_drifts_more() -> None:
    ref = fingerprint([ROW_A, ROW_B])
    slight = fingerprint([([1, 2, 3], [math.log(0.45), math.log(0.25), math.log(0.1)]), ROW_B])
    swapped = fingerprint([([2, 1, 3], [math.log(0.5), math.log(0.2), math.log(0.1)]), ROW_B])
    other = fingerprint([([7, 8, 9], [math.log(0.9), math.log(0.05), math.log(0.01)]), ROW_B])
    small, mid, big = (compare_fingerprints(ref, c) for c in (slight, swapped, other))
    assert small.top1_agreement == 1.0 and small.mean_kl > 0.0
    assert mid.top1_agreement == big.top1_agreement == 0.5
    assert small.mean_kl < mid.mean_kl < big.mean_kl
    assert big.max_kl == pytest.approx(2 * big.mean_kl)  # the second row is identical


def test_row_kl_matches_the_exact_kl_when_the_top_k_holds_all_mass() -> None:
    p, c = [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]
    exact = sum(a * math.log(a / b) for a, b in zip(p, c, strict=True))
    got = row_kl(([0, 1, 2], [math.log(x) for x in p]), ([0, 1, 2], [math.log(x) for x in c]), 3)
    assert got == pytest.approx(exact, rel=1e-6)


def test_fingerprints_of_different_probes_do_not_compare() -> None:
    ref = fingerprint([ROW_A])
    with pytest.raises(FingerprintMismatch, match="differ in vocab_size"):
        compare_fingerprints(ref, fingerprint([ROW_A], vocab=200))
    with pytest.raises(FingerprintMismatch, match="have 1 and 2 rows"):
        compare_fingerprints(ref, fingerprint([ROW_A, ROW_B]))
    with pytest.raises(FingerprintMismatch, match=r"not a behavioural fingerprint: top_logprobs\.0\.0"):
        compare_fingerprints(ref, fingerprint([([1, 2, 3], [0.5, -1.0, -2.0])]))
    with pytest.raises(FingerprintMismatch, match="distinct and inside the vocabulary"):
        compare_fingerprints(ref, fingerprint([([1, 1, 3], ROW_A[1])]))


def test_probes_are_deterministic_and_inside_any_vocabulary() -> None:
    assert probe_inputs(50_000, 4096) == probe_inputs(50_000, 4096)
    for vocab, ctx in ((2, 1), (256, 8), (128_256, 131_072)):
        probes = probe_inputs(vocab, ctx)
        assert len(probes) == 8 and all(len(p) == min(16, ctx) for p in probes)
        assert all(0 <= i < vocab for p in probes for i in p)
    assert len({tuple(p) for p in probe_inputs(50_000, 4096)}) == 8
    assert probe_positions(16) == [3, 7, 11, 15] and probe_positions(1) == [0]
