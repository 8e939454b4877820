"""A Hugging Face Llama/Mistral ``config.json`` as the core's ``ModelConfig``; torch-free.

Fields the core cannot express (biases, sliding windows shorter than the context, rope types other than
default/linear/llama3, activations other than SiLU, partial rotary) are refused with one sentence naming
the file, the field and its value. Both the old (``rope_theta`` + ``rope_scaling``) and the transformers
5 (``rope_parameters``) spellings are read.
"""

from __future__ import annotations

import re
from typing import Any

from model_core.errors import ConfigInvalid, q
from model_core.format.config import ModelConfig, RopeScaling

ARCHITECTURES: dict[str, str] = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral"}
# Hugging Face's name of each core field.
HF_NAMES: dict[str, str] = {
    "vocab_size": "vocab_size",
    "d_model": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "num_kv_heads": "num_key_value_heads",
    "dim_ff": "intermediate_size",
    "max_seq_len": "max_position_embeddings",
    "rope_theta": "rope_theta",
    "rmsnorm_eps": "rms_norm_eps",
    "tie_weights": "tie_word_embeddings",
    "head_dim_override": "head_dim",
}
# Defaults of transformers' LlamaConfig for fields a config.json may leave out.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "rope_theta": 10000.0,
}
# Keys that change nothing the core computes (token ids, training-only settings, bookkeeping).
_HARMLESS = frozenset(
    {
        "architectures",
        "model_type",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "initializer_range",
        "use_cache",
        "transformers_version",
        "attention_dropout",
        "pretraining_tp",
        "torch_dtype",
        "dtype",
        "_name_or_path",
        "rope_scaling",
        "rope_parameters",
        "attention_bias",
        "mlp_bias",
        "hidden_act",
        "sliding_window",
    }
)
_SILU = ("silu", "swish")


def model_config_from_hf(data: Any, source: str = "config.json") -> tuple[ModelConfig, list[str]]:
    """The core config of a Llama/Mistral ``config.json`` object, and the keys it ignored.

    Raises:
        ConfigInvalid: one sentence naming ``source``, the field and its value.
    """
    if not isinstance(data, dict):
        raise ConfigInvalid(f"{source} must hold a JSON object, not {type(data).__name__}", field="config")
    _check_architecture(data, source)
    if data.get("attention_bias", False) is not False:
        _refuse(source, "attention_bias", data["attention_bias"], "the core has no attention biases")
    if data.get("mlp_bias", False) is not False:
        _refuse(source, "mlp_bias", data["mlp_bias"], "the core has no MLP biases")
    act = data.get("hidden_act", "silu")
    if act not in _SILU:
        _refuse(source, "hidden_act", act, "the core's MLP is SwiGLU (silu)")
    hidden, heads = data.get("hidden_size"), data.get("num_attention_heads")
    for name, value in (("hidden_size", hidden), ("num_attention_heads", heads)):
        if value is None:
            raise ConfigInvalid(f"{source} lacks the field {name}", field=name)
    context = data.get("max_position_embeddings", _DEFAULTS["max_position_embeddings"])
    window = data.get("sliding_window")
    if window is not None and not (
        isinstance(context, int) and isinstance(window, int) and window >= context
    ):
        _refuse(
            source,
            "sliding_window",
            window,
            f"the core attends to the whole context (max_position_embeddings={context!r})",
        )
    theta, scaling = _rope(data, source)
    kwargs: dict[str, Any] = {
        core: data.get(hf, _DEFAULTS.get(hf)) for core, hf in HF_NAMES.items() if core != "head_dim_override"
    }
    kv_heads = data.get("num_key_value_heads")
    kwargs["num_kv_heads"] = heads if kv_heads is None else kv_heads
    kwargs["rope_theta"] = float(theta) if _is_number(theta) else theta
    if _is_number(kwargs["rmsnorm_eps"]):
        kwargs["rmsnorm_eps"] = float(kwargs["rmsnorm_eps"])
    head_dim = data.get("head_dim")
    if head_dim is not None and not (
        isinstance(hidden, int) and isinstance(heads, int) and heads and head_dim == hidden // heads
    ):
        kwargs["head_dim_override"] = head_dim
    try:
        cfg = ModelConfig(**kwargs, rope_scaling=scaling, final_norm=True, dropout=0.0)
    except ConfigInvalid as e:
        raise _renamed(e, source) from None
    ignored = sorted(str(k) for k in data if k not in _HARMLESS and k not in HF_NAMES.values())
    ignored = [k for k in ignored if k not in ("num_key_value_heads", "head_dim")]
    return cfg, ignored


def _check_architecture(data: dict[str, Any], source: str) -> None:
    model_type = data.get("model_type")
    if model_type not in ARCHITECTURES.values():
        _refuse(source, "model_type", model_type, "only llama and mistral models are supported")
    archs = data.get("architectures")
    if archs is None:
        return
    if not isinstance(archs, list) or not archs:
        _refuse(source, "architectures", archs, "must be a list naming the model class")
    for arch in archs:
        if arch not in ARCHITECTURES:
            _refuse(source, "architectures", arch, f"only {' and '.join(ARCHITECTURES)} are supported")


def _rope(data: dict[str, Any], source: str) -> tuple[Any, RopeScaling | None]:
    """(rope_theta, scaling) from ``rope_parameters`` (transformers 5) or ``rope_theta``/``rope_scaling``."""
    params = data.get("rope_parameters")
    field = "rope_parameters"
    theta = data.get("rope_theta", _DEFAULTS["rope_theta"])
    if params is None:
        params, field = data.get("rope_scaling"), "rope_scaling"
    elif isinstance(params, dict) and "rope_theta" in params:
        theta = params["rope_theta"]
    partial = data.get("partial_rotary_factor", 1.0)
    if partial != 1.0:
        _refuse(source, "partial_rotary_factor", partial, "the core rotates whole heads")
    if params is None:
        return theta, None
    if not isinstance(params, dict):
        _refuse(source, field, params, "must be an object")
    partial = params.get("partial_rotary_factor", 1.0)
    if partial != 1.0:
        _refuse(source, f"{field}.partial_rotary_factor", partial, "the core rotates whole heads")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind not in ("linear", "llama3"):
        _refuse(
            source, f"{field}.rope_type", kind, "only default, linear and llama3 rope scaling are supported"
        )
    fields = {"kind": kind, "factor": params.get("factor")}
    if kind == "llama3":
        for name in ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            if name not in params:
                raise ConfigInvalid(
                    f"{source} field {field} lacks {name} (llama3 rope)", field=f"{field}.{name}"
                )
            fields[name] = params[name]
    for name, value in fields.items():
        if name != "kind" and isinstance(value, int) and not isinstance(value, bool) and "factor" in name:
            fields[name] = float(value)
    try:
        return theta, RopeScaling(**fields)
    except ConfigInvalid as e:
        raise _renamed(e, source, field) from None


def _renamed(e: ConfigInvalid, source: str, rope_field: str = "rope_scaling") -> ConfigInvalid:
    """The core's sentence with Hugging Face's field names and the file it came from."""
    text = e.message.replace("config field ", f"{source} field ", 1)
    text = text.replace("rope_scaling.kind", f"{rope_field}.rope_type").replace(
        "rope_scaling.", f"{rope_field}."
    )
    for core, hf in HF_NAMES.items():
        text = re.sub(rf"\b{core}\b", hf, text)
    field = e.field.replace("rope_scaling", rope_field)
    return ConfigInvalid(text, field=HF_NAMES.get(field, field), value=e.value)


def _refuse(source: str, field: str, value: Any, why: str) -> None:
    raise ConfigInvalid(
        f"{source} field {field}={q(value)} is not supported: {why}", field=field, value=value
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
