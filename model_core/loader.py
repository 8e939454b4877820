"""The safe zero-copy pack loader: each shard is read once into private memory, hashed as it is read,
its header validated from those verified bytes, and the model's parameters are views of the same bytes.

No second read of the file exists, so a file changed after hashing cannot change the model. The model is
built on the meta device (no random init) and the tensors are assigned, then tied weights re-tied. The
reads themselves are ``model_core.shardread``'s (torch-free, so they can start before torch is imported).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from model_core.config import ModelConfig
from model_core.errors import ModelCoreError, PackInvalid
from model_core.layers import split_packed_w1
from model_core.layouts import SEED, check_tensor_table, plan_layout, tie_mismatch, with_tied_embedding
from model_core.manifest import Manifest
from model_core.model import DTYPES, Transformer
from model_core.shard_header import ShardHeader, parse_header
from model_core.shardread import LoaderConfig, PackRead, ShardBuffer

__all__ = ["LoadedPack", "LoaderConfig", "PackRead", "load_pack"]

TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass
class LoadedPack:
    model: Transformer
    config: ModelConfig
    manifest: Manifest
    ignored_config_keys: list[str]
    dtype: str
    layout: str
    total_bytes: int
    timings: dict[str, float] = field(default_factory=dict)


def tensors_from_buffer(buf: ShardBuffer, header: ShardHeader) -> dict[str, Tensor]:
    """Views into ``buf`` (no copy) for each tensor; only a misaligned tensor is copied."""
    out: dict[str, Tensor] = {}
    for t in header.tensors:
        dtype = TORCH_DTYPES[t.dtype]
        offset = header.data_start + t.begin
        if t.nbytes == 0:
            out[t.name] = torch.empty(t.shape, dtype=dtype)
        elif offset % dtype.itemsize == 0:
            count = t.nbytes // dtype.itemsize
            out[t.name] = torch.frombuffer(buf, dtype=dtype, count=count, offset=offset).view(t.shape)
        else:
            raw = torch.frombuffer(buf, dtype=torch.uint8, count=t.nbytes, offset=offset).clone()
            out[t.name] = raw.view(dtype).view(t.shape)
    return out


def check_state_dict(
    cfg: ModelConfig,
    tensors: dict[str, Tensor],
    dtypes: dict[str, str],
    origin: dict[str, str],
    layout: str = SEED,
) -> tuple[dict[str, Tensor], str]:
    """Coverage, shapes, dtypes and ties of the pack's tensors (named in ``layout``) against the config.

    Returns the core's state dict (views of ``tensors``; the seed's packed ``w1`` split in two) and the
    weights' dtype. Errors name the pack's tensor.
    """
    plan = plan_layout(cfg, layout)
    table = {k: (dtypes[k], tuple(v.shape)) for k, v in tensors.items()}
    dtype = check_tensor_table(plan, table, origin, config_dtype=cfg.dtype)
    if plan.embed not in tensors:
        tensors = with_tied_embedding(plan, tensors)
    elif plan.tied and plan.head in tensors:
        a, b = tensors[plan.embed], tensors[plan.head]
        if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b):
            raise PackInvalid(tie_mismatch(plan), key=plan.head)
    state: dict[str, Tensor] = {}
    for src in plan.sources:
        tensor = tensors[src.tensor]
        state[src.core] = tensor if src.part is None else split_packed_w1(tensor)[src.part]
    return state, dtype


def build_model(cfg: ModelConfig, state: dict[str, Tensor], dtype: str) -> Transformer:
    """Assign ``state`` to a model built on meta (no init, no copy), in the weights' own dtype.

    Each tensor becomes its parameter directly (what ``load_state_dict(strict=True, assign=True)`` does,
    without its per-module hooks): every parameter must get exactly one tensor of its own shape.
    """
    model = Transformer(cfg, device="meta", dtype=DTYPES[dtype])
    params = dict(model.named_parameters(remove_duplicate=False))
    if missing := sorted(params.keys() - state.keys()):
        raise RuntimeError(f"missing key(s) in state_dict: {', '.join(missing[:5])}")
    if unexpected := sorted(state.keys() - params.keys()):
        raise RuntimeError(f"unexpected key(s) in state_dict: {', '.join(unexpected[:5])}")
    modules = dict(model.named_modules())
    for key, tensor in state.items():
        if tensor.shape != params[key].shape:
            raise RuntimeError(
                f"size mismatch for {key}: {tuple(tensor.shape)} given, {tuple(params[key].shape)} expected"
            )
        owner, _, name = key.rpartition(".")
        setattr(modules[owner], name, nn.Parameter(tensor, requires_grad=False))
    model.tie_weights()
    return model.eval()


def load_pack(
    pack_dir: Path | str, config: LoaderConfig = LoaderConfig(), *, early: PackRead | None = None
) -> LoadedPack:
    """Verify and load a pack folder (manifest.json + shards, in the seed's or Hugging Face's layout)
    into an eval-mode model.

    Raises:
        PackInvalid: naming the shard, tensor or manifest field at fault (PackTooLarge when over budget).
        ConfigInvalid: the manifest's config is not valid.

    ``early``: the pack's plan and reads, started beforehand (``PackRead``; its folder and config are used).
    """
    read = early if early is not None else PackRead(pack_dir, config, start=False)
    plan, packcfg, buffers = read.result()
    cfg, ignored = packcfg.config, packcfg.ignored_keys
    t2 = time.perf_counter()
    tensors: dict[str, Tensor] = {}
    dtypes: dict[str, str] = {}
    origin: dict[str, str] = {}
    for shard, buf in zip(plan.shards, buffers, strict=True):
        name = shard.entry.filename
        header = parse_header(
            buf, shard.size, name, read.config.limits.header_max_bytes
        )  # from verified bytes
        for key, tensor in tensors_from_buffer(buf, header).items():
            if key in tensors:
                raise PackInvalid(f"tensor {key!r} is in two shards: {origin[key]!r} and {name!r}", key=key)
            tensors[key] = tensor
            origin[key] = name
        dtypes.update({t.name: t.dtype for t in header.tensors})
    state, dtype = check_state_dict(cfg, tensors, dtypes, origin, packcfg.layout)
    try:
        model = build_model(cfg, state, dtype)
    except RuntimeError as e:  # load_state_dict's own checks; ours should have caught everything first
        raise ModelCoreError(f"the model could not take the pack's tensors: {e}") from None
    t3 = time.perf_counter()
    return LoadedPack(
        model=model,
        config=cfg,
        manifest=plan.manifest,
        ignored_config_keys=ignored,
        dtype=dtype,
        layout=packcfg.layout,
        total_bytes=plan.total_bytes,
        timings={**read.timings, "build_s": t3 - t2},
    )
