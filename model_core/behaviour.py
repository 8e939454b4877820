"""The behavioural checks the sandbox runs after the smoke suite, and the fingerprint every validation records.

``plan_evaluation`` reads the manifest's ``evaluation`` block and the pack files it needs (``tokenizer.json``,
a reference text), each verified against the sha256 the manifest's ``files`` list gives, and checks the
block against the loaded model (vocabulary, context, tokenized prompt lengths): a bad block is PackInvalid
naming the field. ``run_evaluation`` decodes each reference prompt greedily and compares the continuation
with its expectation, then scores the perplexity ceiling. ``fingerprint`` records top-k log-probs on the
fixed probes of ``model_core.format.fingerprint``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model_core.errors import PackInvalid, bounded, q
from model_core.format.digest import Sha256Digest
from model_core.format.errors import InvalidManifest
from model_core.format.fields import MANIFEST_NAME, TOKENIZER_FILE, check_shard_filename
from model_core.format.limits import ManifestLimits
from model_core.format.probes import (
    FINGERPRINT_K,
    FINGERPRINT_SCHEME,
    LOGPROB_DECIMALS,
    probe_inputs,
    probe_positions,
)
from model_core.format.strict_json import parse_json_strict
from model_core.generate import greedy_generate
from model_core.model import Transformer
from model_core.preflight import resolve_shard

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    # Imported where an ``evaluation`` block is read: pydantic's models would add ~0.2 s to every
    # sandbox worker's start, and most packs have no block.
    from model_core.format.evaluation import Evaluation, PromptSpec

FILE_MAX_BYTES = 64 * 1024 * 1024  # tokenizer.json of a 128k vocabulary is ~10 MB
PERPLEXITY_CHUNK = 128  # tokens per forward when scoring a reference text (bounds the logits' memory)
# Echoes of prompts, expectations and outputs are short: the whole report must stay under the
# supervisor's REPORT_MAX_BYTES with MAX_PROMPTS failures, the smoke report and the fingerprint.
SHOWN_CHARS = 100


@dataclass(frozen=True)
class PackFile:
    filename: str
    sha256_hex: str
    size: int | None


@dataclass
class EvaluationPlan:
    """A checked evaluation block with what it needs from the pack, ready to run."""

    evaluation: Evaluation
    tokenizer: Tokenizer | None = None
    prompt_ids: list[list[int]] = field(default_factory=list)
    reference_ids: list[int] | None = None


def _invalid(e: InvalidManifest) -> PackInvalid:
    return PackInvalid(e.message, key=e.field or None)


def _pack_files(raw: Any) -> dict[str, PackFile]:
    """The manifest's ``files`` as name -> entry (CIDs are the registry's to check, sha256 is ours)."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise PackInvalid("manifest 'files' must be a list", key="files")
    out: dict[str, PackFile] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise PackInvalid(f"manifest files[{i}] must be an object", key=f"files[{i}]")
        try:
            name = check_shard_filename(entry.get("filename"), what="file name")
            digest = Sha256Digest.parse(entry.get("sha256"))
        except ValueError as e:
            raise PackInvalid(f"manifest files[{i}]: {e}", key=f"files[{i}]") from None
        size = entry.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise PackInvalid(
                f"manifest files[{i}].size {q(size)} must be a non-negative integer", key=f"files[{i}]"
            )
        out[name] = PackFile(name, digest.hex, size)
    return out


def read_pack_file(pack_dir: Path, entry: PackFile, allowed_roots: tuple[Path, ...] = ()) -> bytes:
    """A pack file's bytes, read once, bounded, and verified against the manifest's sha256 and size."""
    name = entry.filename
    try:
        path, size = resolve_shard(pack_dir, name, allowed_roots)
    except PackInvalid as e:
        raise PackInvalid(e.message.replace(f"shard {name!r}", f"file {name!r}", 1), shard=name) from None
    if size > FILE_MAX_BYTES:
        raise PackInvalid(f"file {name!r} is {size} bytes, more than {FILE_MAX_BYTES} for a pack file read")
    if entry.size is not None and entry.size != size:
        raise PackInvalid(f"file {name!r} is {size} bytes but the manifest says {entry.size}", shard=name)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        data = f.read(FILE_MAX_BYTES + 1)
    got = hashlib.sha256(data).hexdigest()
    if len(data) != size or not hmac.compare_digest(got, entry.sha256_hex):
        raise PackInvalid(
            f"file {name!r} sha256 is {got}, not sha256:{entry.sha256_hex} as the manifest says "
            "(corrupted or tampered)",
            shard=name,
        )
    return data


def load_tokenizer(raw: bytes) -> Tokenizer:
    """The pack's ``tokenizer.json`` as a ``tokenizers.Tokenizer``; PackInvalid when it does not load."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # UnicodeDecodeError or the library's own parse errors
        raise PackInvalid(
            f"the pack's {TOKENIZER_FILE} does not load as a tokenizer: {bounded(e)}", key=TOKENIZER_FILE
        ) from None


def _parse_evaluation(data: Any) -> Evaluation:
    from pydantic import ValidationError

    from model_core.format.evaluation import Evaluation

    try:
        return Evaluation.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(["evaluation", *(str(p) for p in first["loc"])])
        msg = first["msg"].removeprefix("Value error, ")
        raise PackInvalid(f"manifest field {loc}: {msg}", key=loc) from None


def read_manifest_data(pack_dir: Path, max_bytes: int) -> dict[str, Any]:
    with (Path(pack_dir) / MANIFEST_NAME).open("rb") as f:
        raw = f.read(max_bytes + 1)
    try:
        data = parse_json_strict(raw, max_bytes=max_bytes, max_depth=ManifestLimits().json_max_depth)
    except InvalidManifest as e:
        raise _invalid(e) from None
    if not isinstance(data, dict):
        raise PackInvalid("manifest must be a JSON object")
    return data


def _check_ids(where: str, ids: list[int], vocab_size: int) -> None:
    bad = next((i for i in ids if i >= vocab_size), None)
    if bad is not None:
        raise PackInvalid(
            f"{where}: the tokenizer gives token id {bad}, outside the model's vocabulary of {vocab_size}",
            key=where,
        )


def plan_evaluation(
    pack_dir: Path,
    manifest: dict[str, Any],
    model: Transformer,
    allowed_roots: tuple[Path, ...] = (),
) -> EvaluationPlan | None:
    """Check the manifest's evaluation block against the pack and the model; None when it has none.

    Raises:
        PackInvalid: naming the field (a bad block, a missing or tampered file, a prompt that does not fit).
    """
    raw = manifest.get("evaluation")
    if raw is None:
        return None
    from model_core.format.evaluation import check_evaluation, check_prompt_length

    ev = _parse_evaluation(raw)
    files = _pack_files(manifest.get("files"))
    cfg = model.cfg
    try:
        check_evaluation(ev, files=files, context=cfg.max_seq_len, vocab_size=cfg.vocab_size)
    except InvalidManifest as e:
        raise _invalid(e) from None
    plan = EvaluationPlan(ev)
    if ev.needs_tokenizer:
        plan.tokenizer = load_tokenizer(read_pack_file(pack_dir, files[TOKENIZER_FILE], allowed_roots))
    for i, p in enumerate(ev.prompts):
        if p.token_ids is not None:
            plan.prompt_ids.append(list(p.token_ids))
            continue
        assert plan.tokenizer is not None and p.text is not None
        where = f"evaluation.prompts[{i}].text"
        ids = plan.tokenizer.encode(p.text, add_special_tokens=ev.add_special_tokens).ids
        if not ids:
            raise PackInvalid(f"{where}: the tokenizer gives no tokens for the prompt", key=where)
        _check_ids(where, ids, cfg.vocab_size)
        try:
            check_prompt_length(where, len(ids), p.new_tokens, cfg.max_seq_len)
        except InvalidManifest as e:
            raise _invalid(e) from None
        plan.prompt_ids.append(ids)
    if ev.perplexity is not None:
        assert plan.tokenizer is not None
        where = "evaluation.perplexity.file"
        data = read_pack_file(pack_dir, files[ev.perplexity.file], allowed_roots)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise PackInvalid(f"{where}: {ev.perplexity.file!r} is not UTF-8 text", key=where) from None
        ids = plan.tokenizer.encode(text, add_special_tokens=ev.add_special_tokens).ids
        ids = ids[: ev.perplexity.max_tokens]
        if len(ids) < 2:
            raise PackInvalid(f"{where}: {ev.perplexity.file!r} has fewer than 2 tokens to score", key=where)
        _check_ids(where, ids, cfg.vocab_size)
        plan.reference_ids = ids
    return plan


def continuation_text(tokenizer: Tokenizer, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The decoded continuation as it reads after the prompt (decoders that strip a leading space, or
    merge bytes across the boundary, see the prompt too)."""
    full = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)
    head = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    if full.startswith(head):
        return full[len(head) :]
    return str(tokenizer.decode(new_ids, skip_special_tokens=True))


def _judge(p: PromptSpec, new_ids: list[int], text: str | None) -> tuple[bool, str]:
    """Whether the continuation meets the prompt's expectation, and the expectation in words."""
    if isinstance(p.expect, list):
        return new_ids[: len(p.expect)] == p.expect, f"a continuation beginning with token ids {p.expect}"
    assert text is not None
    if p.expect is not None:
        return text.startswith(p.expect), f"a continuation beginning with {q(p.expect, SHOWN_CHARS)}"
    assert p.contains is not None
    return p.contains in text, f"a continuation containing {q(p.contains, SHOWN_CHARS)}"


def run_prompt(plan: EvaluationPlan, model: Transformer, i: int) -> dict[str, Any]:
    p = plan.evaluation.prompts[i]
    ids = plan.prompt_ids[i]
    out = greedy_generate(model, torch.tensor([ids]), p.new_tokens, eos_token_id=plan.evaluation.eos_token_id)
    new_ids = [int(t) for t in out[0, len(ids) :]]
    text = continuation_text(plan.tokenizer, ids, new_ids) if plan.tokenizer is not None else None
    passed, expected = _judge(p, new_ids, text)
    entry: dict[str, Any] = {"field": f"evaluation.prompts[{i}]", "prompt": p.label, "passed": passed}
    entry["produced"] = q(text, SHOWN_CHARS) if text is not None else f"token ids {new_ids[:16]}"
    if not passed:
        entry["expected"] = expected
        if isinstance(p.expect, list) and text is not None:
            entry["produced_ids"] = new_ids[:16]
    return entry


@torch.inference_mode()
def perplexity(model: Transformer, ids: list[int]) -> float:
    """exp(mean negative log-likelihood) of ``ids[1:]``, in windows of the model's context (each window's
    last token starts the next), each window fed PERPLEXITY_CHUNK tokens at a time through the KV cache."""
    ctx = model.cfg.max_seq_len
    nll, count, start = 0.0, 0, 0
    while start < len(ids) - 1:
        window = ids[start : start + ctx]
        cache = model.new_cache(1, len(window))
        for c in range(0, len(window), PERPLEXITY_CHUNK):
            chunk = window[c : c + PERPLEXITY_CHUNK]
            targets = window[c + 1 : c + 1 + len(chunk)]
            logits = model(torch.tensor([chunk]), cache=cache)
            if not targets:
                break
            logp = torch.log_softmax(logits[0, : len(targets)].float(), dim=-1)
            picked = logp.gather(1, torch.tensor(targets)[:, None])
            nll -= float(picked.sum())
            count += len(targets)
        start += len(window) - 1
    mean = nll / count
    return math.exp(mean) if mean < 700 else math.inf


def _perplexity_check(plan: EvaluationPlan, model: Transformer) -> tuple[dict[str, Any], str | None]:
    spec = plan.evaluation.perplexity
    assert spec is not None and plan.reference_ids is not None
    value = perplexity(model, plan.reference_ids)
    ok = math.isfinite(value) and value <= spec.max
    shown = round(value, 4) if math.isfinite(value) else None
    entry = {
        "file": spec.file,
        "tokens": len(plan.reference_ids),
        "value": shown,
        "max": spec.max,
        "passed": ok,
    }
    failure = None
    if not ok:
        failure = (
            f"perplexity on {spec.file!r} ({len(plan.reference_ids)} tokens) is "
            f"{'not finite' if shown is None else f'{shown:g}'}, above the ceiling of {spec.max:g} "
            "(evaluation.perplexity.max)"
        )
    return entry, failure


def run_evaluation(
    plan: EvaluationPlan, model: Transformer, time_budget_s: float = math.inf
) -> tuple[dict[str, Any], list[str]]:
    """Every prompt, then the perplexity ceiling: the report (``report["passed"]`` is the verdict) and one
    sentence per failed check, naming the prompt, the expectation and what the model produced.

    A check that would start after ``time_budget_s`` is skipped and ``report["budget_exhausted"]`` set
    (the caller's verdict is then timed_out, as for the smoke suite).
    """
    t0 = time.perf_counter()
    ev = plan.evaluation
    prompts: list[dict[str, Any]] = []
    budget = time_budget_s if math.isfinite(time_budget_s) else None
    report: dict[str, Any] = {"prompts": prompts, "budget_exhausted": False, "time_budget_s": budget}
    failures: list[str] = []
    for i in range(len(ev.prompts)):
        if time.perf_counter() - t0 > time_budget_s:
            report["budget_exhausted"] = True
            break
        e = run_prompt(plan, model, i)
        prompts.append(e)
        if not e["passed"]:
            failures.append(
                f"prompt {e['prompt']} ({e['field']}): expected {e['expected']}, "
                f"the model produced {e['produced']}"
            )
    if ev.perplexity is not None and not report["budget_exhausted"]:
        if time.perf_counter() - t0 > time_budget_s:
            report["budget_exhausted"] = True
        else:
            report["perplexity"], failure = _perplexity_check(plan, model)
            failures += [failure] if failure else []
    report["passed"] = not failures and not report["budget_exhausted"]
    report["seconds"] = round(time.perf_counter() - t0, 4)
    return report, failures


@torch.inference_mode()
def fingerprint(model: Transformer) -> dict[str, Any]:
    """Top-k token ids and log-probs at the probe positions of the fixed probes (see the format module).

    Raises:
        ValueError: the model's log-probabilities are not finite (no fingerprint can be taken).
    """
    cfg = model.cfg
    probes = torch.tensor(probe_inputs(cfg.vocab_size, cfg.max_seq_len))
    positions = probe_positions(probes.size(1))
    logits = model(probes)[:, positions, :].float()
    logp = torch.log_softmax(logits, dim=-1)
    if not bool(torch.isfinite(logp).all()):
        raise ValueError("the model's log-probabilities on the probes are not finite")
    k = min(FINGERPRINT_K, cfg.vocab_size)
    top = logp.topk(k, dim=-1)
    ids = top.indices.reshape(-1, k).tolist()
    lps = [[min(0.0, round(float(v), LOGPROB_DECIMALS)) for v in row] for row in top.values.reshape(-1, k)]
    return {
        "scheme": FINGERPRINT_SCHEME,
        "k": k,
        "vocab_size": cfg.vocab_size,
        "probe_len": probes.size(1),
        "positions": positions,
        "top_ids": ids,
        "top_logprobs": lps,
    }
