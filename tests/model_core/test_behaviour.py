"""The behavioural gate in the sandbox: reference prompts and a perplexity ceiling judge what the model does,
a broken copy that passes the smoke suite is ``behavior_failed``, and every validation records a fingerprint."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from model_core.behaviour import continuation_text, plan_evaluation, read_manifest_data, run_evaluation
from model_core.errors import bounded_report
from model_core.format.fingerprint import compare_fingerprints
from model_core.loader import load_pack
from model_core.sandbox import EXIT_CODES, SandboxLimits
from tests.model_core.behaviour_util import (
    add_files,
    add_tokenizer,
    own_continuation,
    run_worker,
    set_evaluation,
    word_tokenizer,
)
from tests.model_core.conftest import rewrite_shard, shard_with

PROMPT = [1, 2, 3, 4, 5]
WORD_PROMPT = "w7 w8 w9 w10"
REFERENCE = " ".join(f"w{(i * 37) % 200}" for i in range(120))


def swap_layers(pack: Path) -> None:
    """Swap decoder layers 0 and 1: the same tensors, well-formed, in the wrong order."""
    for suffix in ("attn.q_proj.weight", "attn.o_proj.weight", "mlp.w2.weight"):
        a, b = f"layers.0.{suffix}", f"layers.1.{suffix}"
        sa, sb = shard_with(pack, a), shard_with(pack, b)
        ta = _tensor(pack, sa, a)
        tb = _tensor(pack, sb, b)
        rewrite_shard(pack, sa, lambda t, k=a, v=tb: t.__setitem__(k, v))
        rewrite_shard(pack, sb, lambda t, k=b, v=ta: t.__setitem__(k, v))


def scale_matrix(pack: Path, key: str = "layers.0.attn.o_proj.weight", factor: float = 4.0) -> None:
    rewrite_shard(pack, shard_with(pack, key), lambda t: t.__setitem__(key, t[key] * factor))


def _tensor(pack: Path, shard: str, key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(pack / shard), "pt") as f:
        return f.get_tensor(key).clone()


def test_a_pack_meeting_its_token_id_expectations_passes(tiny_pack: Path, tmp_path: Path) -> None:
    expect = own_continuation(tiny_pack, PROMPT, 8)
    set_evaluation(tiny_pack, {"prompts": [{"name": "ids", "token_ids": PROMPT, "expect": expect}]})
    rc, result = run_worker(tiny_pack, tmp_path)
    assert (rc, result["verdict"]) == (0, "pass"), result["reason"]
    assert result["behaviour"]["passed"] and result["behaviour"]["prompts"][0]["passed"]
    assert "behaves as its evaluation expects" in result["reason"]


def test_text_prompts_use_the_packs_tokenizer(tiny_pack: Path, tmp_path: Path) -> None:
    tok = add_tokenizer(tiny_pack)
    ids = tok.encode(WORD_PROMPT).ids
    text = own_continuation(tiny_pack, ids, 6, tok)
    words = text.split()
    set_evaluation(
        tiny_pack,
        {
            "prompts": [
                {"text": WORD_PROMPT, "expect": text, "max_new_tokens": 6},
                {"text": WORD_PROMPT, "contains": words[3], "max_new_tokens": 6},
            ]
        },
    )
    rc, result = run_worker(tiny_pack, tmp_path)
    assert (rc, result["verdict"]) == (0, "pass"), result["reason"]
    assert [p["passed"] for p in result["behaviour"]["prompts"]] == [True, True]


@pytest.mark.parametrize("breakage", [swap_layers, scale_matrix], ids=["layers_swapped", "matrix_scaled"])
def test_a_broken_copy_passes_smoke_but_fails_behaviour(
    tiny_pack: Path, tmp_path: Path, breakage: Callable[[Path], None]
) -> None:
    tok = add_tokenizer(tiny_pack)
    expect = own_continuation(tiny_pack, PROMPT, 8)
    text = own_continuation(tiny_pack, tok.encode(WORD_PROMPT).ids, 8, tok)
    set_evaluation(
        tiny_pack,
        {
            "prompts": [
                {"name": "counting", "token_ids": PROMPT, "expect": expect},
                {"text": WORD_PROMPT, "expect": text, "max_new_tokens": 8},
            ]
        },
    )
    _, healthy = run_worker(tiny_pack, tmp_path)
    assert healthy["verdict"] == "pass", healthy["reason"]
    assert healthy["behaviour"]["prompts"][1]["produced"] == repr(text)  # what it said, passing or not
    breakage(tiny_pack)
    rc, result = run_worker(tiny_pack, tmp_path)
    assert result["smoke"]["passed"], result["smoke"]
    assert (rc, result["verdict"]) == (EXIT_CODES["behavior_failed"], "behavior_failed")
    reason = result["reason"]
    assert reason.startswith("prompt 'counting' (evaluation.prompts[0]): expected a continuation beginning")
    assert str(expect) in reason and "the model produced" in reason
    assert "and 1 more failed checks" in reason
    second = result["behaviour"]["prompts"][1]
    assert not second["passed"] and second["prompt"] == repr(WORD_PROMPT)
    assert second["expected"] == f"a continuation beginning with {text!r}" and second["produced"] != repr(
        text
    )
    drift = compare_fingerprints(healthy["fingerprint"], result["fingerprint"])
    assert drift.mean_kl > 0.1 and drift.top1_agreement < 1.0


def _perplexity_of(pack: Path, tmp_path: Path) -> float:
    set_evaluation(pack, {"perplexity": {"file": "reference.txt", "max": 1e9}})
    rc, result = run_worker(pack, tmp_path)
    assert rc == 0, result["reason"]
    value: float = result["behaviour"]["perplexity"]["value"]
    return value


def _reference_perplexity(pack: Path, text: str) -> float:
    """The same definition computed plainly: one uncached forward per context window (each window's last
    token starts the next), no chunking."""
    model = load_pack(pack).model
    ids = word_tokenizer().encode(text).ids
    ctx, nll, count, start = model.cfg.max_seq_len, 0.0, 0, 0
    with torch.inference_mode():
        while start < len(ids) - 1:
            window = ids[start : start + ctx]
            logp = torch.log_softmax(model(torch.tensor([window]))[0, :-1].double(), dim=-1)
            nll -= float(logp.gather(1, torch.tensor(window[1:])[:, None]).sum())
            count += len(window) - 1
            start += len(window) - 1
    return math.exp(nll / count)


def test_perplexity_ceiling(tiny_pack: Path, tmp_path: Path) -> None:
    add_tokenizer(tiny_pack)
    add_files(tiny_pack, {"reference.txt": REFERENCE.encode()})
    value = _perplexity_of(tiny_pack, tmp_path)
    assert value == pytest.approx(_reference_perplexity(tiny_pack, REFERENCE), rel=1e-4)
    set_evaluation(tiny_pack, {"perplexity": {"file": "reference.txt", "max": value * 1.01}})
    rc, result = run_worker(tiny_pack, tmp_path)
    assert (rc, result["verdict"]) == (0, "pass")
    assert result["behaviour"]["perplexity"]["tokens"] == 120
    set_evaluation(tiny_pack, {"perplexity": {"file": "reference.txt", "max": value * 0.99}})
    rc, result = run_worker(tiny_pack, tmp_path)
    assert (rc, result["verdict"]) == (15, "behavior_failed")
    assert result["reason"].startswith("perplexity on 'reference.txt' (120 tokens) is ")
    assert "above the ceiling of" in result["reason"] and "evaluation.perplexity.max" in result["reason"]


def test_perplexity_matches_a_direct_computation(tiny_pack: Path, tmp_path: Path) -> None:
    """Windows and chunks change nothing: one full forward over a text shorter than the context agrees."""
    tok = add_tokenizer(tiny_pack)
    add_files(tiny_pack, {"reference.txt": REFERENCE.encode()})
    value = _perplexity_of(tiny_pack, tmp_path)
    ids = torch.tensor([tok.encode(REFERENCE).ids])
    logits = load_pack(tiny_pack).model(ids)
    nll = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:])
    assert value == pytest.approx(float(nll.exp()), rel=1e-3)


@pytest.mark.parametrize(
    ("evaluation", "files", "needle"),
    [
        (
            {"prompts": [{"text": " ".join(["w1"] * 250), "contains": "w1", "max_new_tokens": 8}]},
            ["tokenizer.json"],
            "evaluation.prompts[0].text: the prompt's 250 tokens plus 8 new tokens exceed the model's "
            "context of 256 tokens",
        ),
        (
            {"prompts": [{"token_ids": [1] * 250, "expect": [1], "max_new_tokens": 10}]},
            [],
            "evaluation.prompts[0].token_ids: the prompt's 250 tokens plus 10 new tokens exceed",
        ),
        (
            {"prompts": [{"text": "w1 w2", "contains": "w3"}]},
            [],
            "evaluation.prompts[0] needs the pack's tokenizer, but 'tokenizer.json' is not among",
        ),
        (
            {"perplexity": {"file": "absent.txt", "max": 10.0}},
            ["tokenizer.json"],
            "evaluation.perplexity.file 'absent.txt' is not one of the pack's files",
        ),
        (
            {"prompts": [{"token_ids": [1], "expect": [1] * 300}]},
            [],
            "manifest field evaluation.prompts.0.expect: an expected continuation must be 1 to 256 token ids",
        ),
        (
            {"prompts": [{"token_ids": [999], "expect": [1]}]},
            [],
            "evaluation.prompts[0].token_ids: token id 999 is outside the model's vocabulary of 256",
        ),
    ],
    ids=["text_too_long", "ids_too_long", "no_tokenizer", "reference_absent", "expect_too_long", "vocab"],
)
def test_a_bad_evaluation_block_is_an_invalid_pack(
    tiny_pack: Path, tmp_path: Path, evaluation: dict, files: list[str], needle: str
) -> None:
    if "tokenizer.json" in files:
        add_tokenizer(tiny_pack)
    set_evaluation(tiny_pack, evaluation)
    rc, result = run_worker(tiny_pack, tmp_path)
    assert (rc, result["verdict"]) == (10, "invalid_pack")
    assert needle in result["reason"], result["reason"]
    assert "smoke" not in result  # refused before the smoke suite spent any time


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        (
            lambda p: (p / "tokenizer.json").unlink(),
            "file 'tokenizer.json' is listed in the manifest but missing",
        ),
        (lambda p: _flip_byte(p / "tokenizer.json"), "not sha256:"),
    ],
    ids=["missing", "tampered"],
)
def test_the_tokenizer_file_is_verified(
    tiny_pack: Path, tmp_path: Path, tamper: Callable[[Path], object], needle: str
) -> None:
    add_tokenizer(tiny_pack)
    set_evaluation(tiny_pack, {"prompts": [{"text": "w1 w2", "contains": "w3"}]})
    tamper(tiny_pack)
    rc, result = run_worker(tiny_pack, tmp_path)
    assert (rc, result["verdict"]) == (10, "invalid_pack") and needle in result["reason"], result["reason"]


def test_a_tokenizer_that_does_not_load_is_named(tiny_pack: Path, tmp_path: Path) -> None:
    add_files(tiny_pack, {"tokenizer.json": b'{"model": "nonsense"}'})
    set_evaluation(tiny_pack, {"prompts": [{"text": "w1 w2", "contains": "w3"}]})
    rc, result = run_worker(tiny_pack, tmp_path)
    assert rc == 10 and "the pack's tokenizer.json does not load as a tokenizer" in result["reason"]


def test_every_validation_records_a_fingerprint(tiny_pack: Path, tmp_path: Path) -> None:
    rc, first = run_worker(tiny_pack, tmp_path)
    assert rc == 0 and "behaviour" not in first
    fp = first["fingerprint"]
    assert fp["scheme"] == "probe-v1" and fp["k"] == 5 and len(fp["top_ids"]) == 32
    assert all(len(r) == 5 and r == sorted(r, reverse=True) for r in fp["top_logprobs"])
    _, again = run_worker(tiny_pack, tmp_path)
    same = compare_fingerprints(fp, again["fingerprint"])
    assert (same.top1_agreement, same.mean_kl) == (1.0, 0.0)


def test_the_real_sandbox_reports_behavior_failed(tiny_pack: Path, tmp_path: Path) -> None:
    expect = own_continuation(tiny_pack, PROMPT, 6)
    set_evaluation(tiny_pack, {"prompts": [{"token_ids": PROMPT, "expect": expect}]})
    scale_matrix(tiny_pack)
    report_path = tmp_path / "report.json"
    args = [str(tiny_pack), "--report", str(report_path), "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "model_core.validate", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(report_path.read_text())
    assert proc.returncode == 15 and report["exit_code"] == 15, proc.stderr
    assert report["verdict"] == "behavior_failed" and report["smoke"]["passed"]
    assert report["reason"].startswith("prompt token ids [1, 2, 3, 4, 5] (evaluation.prompts[0])")
    assert report["fingerprint"]["scheme"] == "probe-v1" and not report["behaviour"]["passed"]
    assert proc.stderr.startswith("behavior_failed: prompt token ids")


def test_the_largest_failing_evaluation_still_fits_the_report(tiny_pack: Path, tmp_path: Path) -> None:
    """Sixteen failing prompts at their longest, a failing ceiling, the smoke report and the fingerprint
    stay under the supervisor's report budget, so nothing (the fingerprint least) is dropped."""
    add_tokenizer(tiny_pack)
    add_files(tiny_pack, {"reference.txt": REFERENCE.encode()})
    prompt = {"name": "n" * 128, "text": "w3 " * 150, "expect": "x" * 1024, "max_new_tokens": 25}
    set_evaluation(
        tiny_pack, {"prompts": [prompt] * 16, "perplexity": {"file": "reference.txt", "max": 1.0001}}
    )
    rc, result = run_worker(tiny_pack, tmp_path)
    assert rc == 15 and result["reason"].endswith("(and 16 more failed checks)")
    full = {**result, "exit_code": rc, "pack_dir": "/d" * 128, "limits": asdict(SandboxLimits())}
    report = bounded_report(full)
    assert "report_truncated" not in report and report["fingerprint"] == result["fingerprint"]
    assert len(report["behaviour"]["prompts"]) == 16


@pytest.mark.parametrize("kind", ["byte_level", "metaspace"])
def test_a_continuation_reads_as_it_does_after_the_prompt(kind: str) -> None:
    """Decoders that drop a first token's leading space (SentencePiece's) or merge bytes across tokens
    (byte-level BPE) still give the continuation as it reads in the whole text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if kind == "byte_level":
        tok.pre_tokenizer, tok.decoder = (
            pre_tokenizers.ByteLevel(add_prefix_space=False),
            decoders.ByteLevel(),
        )
    else:
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    corpus = ["The capital of France is Paris.", "The capital of Italy is Rome."] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=120, show_progress=False))
    prompt = tok.encode("The capital of France is").ids
    new = tok.encode("The capital of France is Paris.").ids[len(prompt) :]
    assert continuation_text(tok, prompt, new) == " Paris."
    if kind == "metaspace":
        assert tok.decode(new) == "Paris."  # what decoding the new tokens alone would have said


def test_checks_past_the_time_budget_are_skipped(tiny_pack: Path) -> None:
    set_evaluation(tiny_pack, {"prompts": [{"token_ids": PROMPT, "expect": [1]}]})
    model = load_pack(tiny_pack).model
    plan = plan_evaluation(tiny_pack, read_manifest_data(tiny_pack, 1 << 20), model)
    assert plan is not None
    report, failures = run_evaluation(plan, model, time_budget_s=-1.0)
    assert report["budget_exhausted"] and not report["passed"] and report["prompts"] == [] and not failures
    report, failures = run_evaluation(plan, model)
    assert not report["budget_exhausted"] and report["time_budget_s"] is None and len(failures) == 1
