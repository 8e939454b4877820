"""The transformer: each seed bug of issue #4 has a test here that the seed's behaviour fails."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from model_core.config import ModelConfig
from model_core.errors import ModelCoreError, SequenceTooLong
from model_core.layers import GQASelfAttention, RMSNorm
from model_core.model import Transformer
from tests.model_core.conftest import left_pad

TOL = 1e-4


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = max(1.0, float(b.abs().max()))
    assert float((a - b).abs().max()) <= TOL * scale


@torch.no_grad()
def test_chunked_prefill_with_cache_matches_full_forward(tiny_model: Transformer) -> None:
    """Bug 1: the seed's tril(diagonal=0) on a (T, S) mask gave a max logit error of ~21."""
    ids = torch.randint(0, 64, (2, 12))
    full = tiny_model(ids)
    cache = tiny_model.new_cache(2, 12)
    parts = [tiny_model(ids[:, a:b], cache=cache) for a, b in ((0, 5), (5, 9), (9, 12))]
    close(torch.cat(parts, 1), full)


@torch.no_grad()
def test_step_decoding_matches_full_forward_and_cache_is_not_reallocated(tiny_model: Transformer) -> None:
    ids = torch.randint(0, 64, (2, 10))
    cache = tiny_model.new_cache(2, 10)
    ptr = cache.k.data_ptr()
    steps = [tiny_model(ids[:, i : i + 1], cache=cache) for i in range(10)]
    close(torch.cat(steps, 1), tiny_model(ids))
    assert cache.k.data_ptr() == ptr and cache.length == 10  # written in place, no torch.cat growth


@torch.no_grad()
def test_left_padded_prompt_stays_correct_through_cached_decoding(tiny_model: Transformer) -> None:
    """Bug 2: the seed attended to the pads of a left-padded prompt once decoding used the cache."""
    rows = [torch.randint(1, 64, (9,)), torch.randint(1, 64, (4,))]
    ids, mask = left_pad(rows)
    nxt = torch.randint(1, 64, (2, 3))
    cache = tiny_model.new_cache(2, 12)
    got = [tiny_model(ids, attention_mask=mask, cache=cache)]
    got += [tiny_model(nxt[:, i : i + 1], cache=cache) for i in range(3)]
    batched = torch.cat(got, 1)
    for r, row in enumerate(rows):
        want = tiny_model(torch.cat([row, nxt[r]])[None])
        real = torch.cat([mask[r].bool(), torch.ones(3, dtype=torch.bool)])
        close(batched[r, real], want[0])


@torch.no_grad()
def test_full_length_mask_is_accepted_with_a_cache(tiny_model: Transformer) -> None:
    """Bug 2: the seed rejected a (B, past + T) attention mask."""
    rows = [torch.randint(1, 64, (6,)), torch.randint(1, 64, (3,))]
    ids, mask = left_pad(rows)
    cache = tiny_model.new_cache(2, 8)
    tiny_model(ids, attention_mask=mask, cache=cache)
    step = torch.randint(1, 64, (2, 1))
    full_mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
    out = tiny_model(step, attention_mask=full_mask, cache=cache)
    close(out[1], tiny_model(torch.cat([rows[1], step[1]])[None])[0, -1:])
    with pytest.raises(ModelCoreError, match="columns"):
        tiny_model(step, attention_mask=torch.ones(2, 5), cache=cache)


@pytest.mark.parametrize("backend", [True, False], ids=["sdpa", "manual"])
def test_fully_masked_query_rows_give_zeros_not_nan(backend: bool) -> None:
    """Bug 3: a query row with every key masked (left padding) gave NaN."""
    torch.manual_seed(0)
    attn = GQASelfAttention(32, 4, 2, 0.0)
    attn.use_sdpa = backend
    x = torch.randn(1, 3, 32)
    cos, sin = torch.ones(1, 1, 3, 8), torch.zeros(1, 1, 3, 8)
    mask = torch.tensor([[False, False, False], [True, True, False], [True, True, True]])[None, None]
    with torch.no_grad():
        out = attn(x, (cos, sin), mask, None, 0)
        o_proj_of_zero = attn.o_proj(torch.zeros(32))
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 0], o_proj_of_zero)  # zero attention output (no bias: zeros)


@torch.no_grad()
def test_padded_batch_logits_are_finite_on_both_backends(tiny_model: Transformer) -> None:
    ids, mask = left_pad([torch.randint(1, 64, (8,)), torch.randint(1, 64, (2,))])
    for backend in ("sdpa", "manual"):
        tiny_model.set_attention_backend(backend)
        assert torch.isfinite(tiny_model(ids, attention_mask=mask)).all()
    tiny_model.set_attention_backend("sdpa")


def test_gqa_matches_attention_with_repeated_kv_heads(tiny_model: Transformer) -> None:
    """SDPA's enable_gqa (no copy of K/V) must equal the seed's repeat_interleave semantics."""
    attn = tiny_model.layers[0].attn
    x = torch.randn(2, 5, 32)
    cos, sin = tiny_model.rope(torch.arange(5).expand(2, 5))
    with torch.no_grad():
        got = attn(x, (cos, sin), None, None, 0)
        q = attn.q_proj(x).view(2, 5, 4, 8).transpose(1, 2)
        k = attn.k_proj(x).view(2, 5, 2, 8).transpose(1, 2)
        v = attn.v_proj(x).view(2, 5, 2, 8).transpose(1, 2)
        from model_core.layers import apply_rope

        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        want = attn.o_proj(ref.transpose(1, 2).reshape(2, 5, 32))
    close(got, want)


def test_initial_loss_is_near_uniform_with_tied_weights() -> None:
    """Bug 4: the seed left the tied embedding at N(0, 1): initial loss ~394 instead of ~ln V."""
    cfg = ModelConfig(vocab_size=2000, d_model=128, num_layers=2, num_heads=4, num_kv_heads=2, dim_ff=256)
    torch.manual_seed(0)
    model = Transformer(cfg)
    assert model.lm_head.weight is model.embed.weight
    ids = torch.randint(0, 2000, (2, 32))
    with torch.no_grad():
        logits = model(ids)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 2000), ids[:, 1:].reshape(-1))
    assert abs(float(loss) - math.log(2000)) < 0.5


def test_every_parameter_is_initialised_once(monkeypatch: pytest.MonkeyPatch, tiny_cfg: ModelConfig) -> None:
    """Bug 4: the seed initialised every Linear twice (its own init, then xavier)."""
    counts: Counter[int] = Counter()
    for name in ("normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_", "trunc_normal_"):
        original = getattr(torch.nn.init, name)

        def counting(*a: object, _f=original, **k: object) -> torch.Tensor:
            t = a[0] if a else k["tensor"]
            assert isinstance(t, torch.Tensor)
            if not t.is_meta:
                counts[id(t)] += 1
            return _f(*a, **k)

        monkeypatch.setattr(torch.nn.init, name, counting)
    model = Transformer(tiny_cfg)
    matrices = {id(p) for p in model.parameters() if p.dim() > 1}
    assert {counts[i] for i in matrices} == {1}


def test_fp16_rmsnorm_does_not_overflow_to_zero() -> None:
    """Bug 8: x.pow(2) in fp16 overflows for |x| > 256, and the seed's norm returned zeros."""
    norm = RMSNorm(16, dtype=torch.float16)
    x = torch.full((2, 16), 1000.0, dtype=torch.float16)
    out = norm(x)
    assert out.dtype == torch.float16
    assert torch.allclose(out.float(), torch.ones(2, 16), atol=1e-2)


def test_meta_built_model_gets_real_rope_tables_and_stays_tied(tiny_model: Transformer) -> None:
    """Bug 8: on the meta device the seed's RoPE buffers stayed on meta and assign=True untied weights."""
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    state["lm_head.weight"] = state["embed.weight"]
    model = Transformer(tiny_model.cfg, device="meta")
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    assert model.lm_head.weight is model.embed.weight
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        out = model(ids)
    assert not model.rope.cos_cached.is_meta
    close(out, tiny_model(ids).detach())


def test_too_long_input_is_refused_before_any_layer_runs(tiny_model: Transformer) -> None:
    """Bug 6: the seed failed deep inside layer 0 without saying the actual length."""
    calls: list[int] = []
    tiny_model.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(SequenceTooLong) as e:
        tiny_model(torch.zeros(1, 33, dtype=torch.long))
    assert "33" in str(e.value) and "32" in str(e.value)
    assert calls == []


def test_cache_overflow_is_refused(tiny_model: Transformer) -> None:
    cache = tiny_model.new_cache(1, 4)
    with torch.no_grad():
        tiny_model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
        with pytest.raises(SequenceTooLong, match="capacity"):
            tiny_model(torch.zeros(1, 2, dtype=torch.long), cache=cache)


def test_state_dict_keys_are_the_seeds(tiny_model: Transformer) -> None:
    keys = set(tiny_model.state_dict())
    assert {"embed.weight", "lm_head.weight", "final_norm.weight", "layers.1.mlp.w1.weight"} <= keys
    assert {f"layers.0.attn.{p}_proj.weight" for p in "qkvo"} <= keys
    assert {"layers.0.norm1.weight", "layers.0.norm2.weight", "layers.0.mlp.w2.weight"} <= keys
    assert tiny_model.state_dict()["layers.0.mlp.w1.weight"].shape == (96, 32)  # gate+up fused


def test_rope_tables_grow_on_demand_up_to_max_seq_len() -> None:
    cfg = ModelConfig(
        vocab_size=16, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, dim_ff=8, max_seq_len=2**20
    )
    model = Transformer(cfg)
    assert model.rope.cos_cached.size(0) <= 4096  # not 2**20 rows up front
    with torch.no_grad():
        model(torch.zeros(1, 5000, dtype=torch.long))
    assert model.rope.cos_cached.size(0) >= 5000


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape", [(1, 7), (2, 1, 7), (1, 2, 7), (3, 7), (4, 1, 7), (5, 7), (2, 8, 7), (0, 7)]
)
def test_linear_matches_f_linear_for_every_row_count(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Linear computes ``weight @ x.T`` for 2-4 float32 rows (layers.SMALL_BATCH_ROWS): same values and
    shape as F.linear, for 2-D and 3-D inputs; other row counts and dtypes are F.linear itself."""
    from model_core.layers import SMALL_BATCH_ROWS, Linear

    layer = Linear(7, 5, dtype=dtype)
    x = torch.randn(*shape, dtype=dtype)
    with torch.no_grad():
        got, want = layer(x), F.linear(x, layer.weight)
    assert got.shape == want.shape == (*shape[:-1], 5) and got.dtype == dtype
    rows = x.numel() // 7
    if dtype == torch.float32 and SMALL_BATCH_ROWS[0] <= rows <= SMALL_BATCH_ROWS[1]:
        close(got, want)
    else:
        assert torch.equal(got, want)
