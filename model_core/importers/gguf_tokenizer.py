"""A Hugging Face ``tokenizer.json`` (and its two small JSON companions) rebuilt from GGUF metadata.

Only byte-level BPE vocabularies (``tokenizer.ggml.model == "gpt2"``) are rebuilt, with the
``tokenizers`` library. ``tokenizer.ggml.pre`` names the pre-tokenizer llama.cpp applies; each supported
name maps to the same splitting regexes (applied in order, each piece kept, as llama.cpp does), then the
byte-to-unicode mapping of GPT-2. Control tokens become special added tokens, user-defined tokens
added tokens, so both are matched before BPE as in llama.cpp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from model_core.errors import q
from model_core.importers.gguf_read import GGUFFile, GGUFRefused

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class _Pre:
    regexes: tuple[str, ...]
    ignore_merges: bool = False


# tokenizer.ggml.pre -> how llama.cpp pre-tokenizes it
PRE_TOKENIZERS: dict[str, _Pre] = {
    "gpt-2": _Pre((_GPT2,)),
    "smollm": _Pre((r"\p{N}", _GPT2)),
    "starcoder": _Pre((r"\p{N}", _GPT2)),
    "refact": _Pre((r"\p{N}", _GPT2)),
    "codeshell": _Pre((r"\p{N}", _GPT2)),
    "llama-bpe": _Pre((_LLAMA3,), ignore_merges=True),
    "llama3": _Pre((_LLAMA3,), ignore_merges=True),
    "llama-v3": _Pre((_LLAMA3,), ignore_merges=True),
}
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4
_SPECIAL_KEYS = {
    "bos": "bos_token_id",
    "eos": "eos_token_id",
    "unk": "unknown_token_id",
    "pad": "padding_token_id",
}


@dataclass
class GGUFTokenizer:
    """The rebuilt tokenizer and what the config files need to say about it."""

    tokenizer: Tokenizer
    special_ids: dict[str, int]
    special_tokens: dict[str, str]
    add_bos: bool
    add_eos: bool
    chat_template: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def write(self, folder: Path, model_max_length: int) -> None:
        self.tokenizer.save(str(folder / "tokenizer.json"))
        special_map = {f"{k}_token": v for k, v in self.special_tokens.items()}
        config: dict[str, Any] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": model_max_length,
            "clean_up_tokenization_spaces": False,
            "add_bos_token": self.add_bos,
            "add_eos_token": self.add_eos,
            **special_map,
        }
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        _write_json(folder / "tokenizer_config.json", config)
        _write_json(folder / "special_tokens_map.json", special_map)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _pre_tokenizer(pre: _Pre) -> pre_tokenizers.PreTokenizer:
    steps: list[pre_tokenizers.PreTokenizer] = [
        pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in pre.regexes
    ]
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    return pre_tokenizers.Sequence(steps)


def _merges(f: GGUFFile, vocab: dict[str, int]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for i, merge in enumerate(f.str_list("tokenizer.ggml.merges")):
        parts = merge.split(" ")
        if len(parts) != 2 or parts[0] not in vocab or parts[1] not in vocab:
            raise GGUFRefused(
                f.path, f"tokenizer.ggml.merges[{i}]", f"({q(merge, 60)}) is not two tokens of the vocabulary"
            )
        pairs.append((parts[0], parts[1]))
    return pairs


def _vocab(f: GGUFFile, tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token in vocab:
            raise GGUFRefused(
                f.path, f"tokenizer.ggml.tokens[{i}]", f"({q(token, 60)}) repeats token {vocab[token]}"
            )
        vocab[token] = i
    return vocab


def _special_ids(f: GGUFFile, n_tokens: int) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name, suffix in _SPECIAL_KEYS.items():
        key = f"tokenizer.ggml.{suffix}"
        if f.has(key):
            token_id = f.get_int(key)
            if not 0 <= token_id < n_tokens:
                raise GGUFRefused(
                    f.path, key, f"({token_id}) is not a token id (the vocabulary has {n_tokens})"
                )
            ids[name] = token_id
    return ids


def _post_processor(add_bos: bool, add_eos: bool, tokens: list[str], ids: dict[str, int], f: GGUFFile) -> Any:
    if not (add_bos or add_eos):
        return processors.ByteLevel(trim_offsets=False)
    specials: list[tuple[str, int]] = []
    single = "$A"
    for flag, name, where in ((add_bos, "bos", "before"), (add_eos, "eos", "after")):
        if not flag:
            continue
        if name not in ids:
            raise GGUFRefused(
                f.path, f"tokenizer.ggml.{_SPECIAL_KEYS[name]}", f"is missing but add_{name}_token is set"
            )
        token = tokens[ids[name]]
        specials.append((token, ids[name]))
        single = f"{token} {single}" if where == "before" else f"{single} {token}"
    pair = f"{single} {single.replace('$A', '$B:1')}"
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def build_tokenizer(f: GGUFFile) -> GGUFTokenizer:
    """The GGUF vocabulary as a ``tokenizers`` BPE tokenizer; other tokenizer models are refused."""
    kind = f.get_str("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GGUFRefused(
            f.path,
            "tokenizer.ggml.model",
            f"is {q(kind)}; only byte-level BPE ('gpt2') vocabularies are supported",
        )
    pre_name = f.get_str("tokenizer.ggml.pre")
    pre = PRE_TOKENIZERS.get(pre_name)
    if pre is None:
        raise GGUFRefused(
            f.path, "tokenizer.ggml.pre", f"is {q(pre_name)}; supported: {', '.join(sorted(PRE_TOKENIZERS))}"
        )
    tokens = f.str_list("tokenizer.ggml.tokens")
    vocab = _vocab(f, tokens)
    types = (
        f.int_list("tokenizer.ggml.token_type") if f.has("tokenizer.ggml.token_type") else [1] * len(tokens)
    )
    if len(types) != len(tokens):
        raise GGUFRefused(
            f.path, "tokenizer.ggml.token_type", f"has {len(types)} entries for {len(tokens)} tokens"
        )
    try:
        model = models.BPE(vocab=vocab, merges=_merges(f, vocab), ignore_merges=pre.ignore_merges)
    except Exception as e:  # the tokenizers library's own refusal, as one sentence
        raise GGUFRefused(
            f.path, "tokenizer.ggml.merges", f"is refused by tokenizers: {q(str(e), 120)}"
        ) from None
    tok = Tokenizer(model)
    tok.pre_tokenizer = _pre_tokenizer(pre)
    tok.decoder = decoders.ByteLevel()
    ids = _special_ids(f, len(tokens))
    add_bos = f.get_bool("tokenizer.ggml.add_bos_token", False)
    add_eos = f.get_bool("tokenizer.ggml.add_eos_token", False)
    tok.post_processor = _post_processor(add_bos, add_eos, tokens, ids, f)
    special = {i for i, t in enumerate(types) if t == TOKEN_CONTROL} | set(ids.values())
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in sorted(special)])
    user = [i for i, t in enumerate(types) if t == TOKEN_USER_DEFINED and i not in special]
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i in user])
    template = f.get_str("tokenizer.chat_template") if f.has("tokenizer.chat_template") else None
    return GGUFTokenizer(
        tokenizer=tok,
        special_ids=ids,
        special_tokens={name: tokens[i] for name, i in ids.items()},
        add_bos=add_bos,
        add_eos=add_eos,
        chat_template=template,
    )
