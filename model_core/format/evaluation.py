"""The manifest's ``evaluation`` block: what a pack's model must *do* for the gate to pass it.

Reference prompts (``text``, tokenized with the pack's ``tokenizer.json``, or ``token_ids``), each with an
expected greedy continuation (``expect``: the continuation begins with exactly this text or these ids;
``contains``: the decoded continuation contains this text), and an optional perplexity ceiling on a
reference text shipped as one of the pack's ``files``. Every size is bounded so a hostile manifest cannot
buy unbounded work in the sandbox. Torch-free: the registry validates the block at publish, the sandbox
worker runs it (``model_core.behaviour``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model_core.errors import q
from model_core.format.errors import InvalidManifest
from model_core.format.fields import TOKENIZER_FILE, check_shard_filename

MAX_PROMPTS = 16
MAX_NEW_TOKENS = 256
DEFAULT_NEW_TOKENS = 16
MAX_PROMPT_IDS = 4096
PROMPT_TEXT_MAX_CHARS = 4096
EXPECT_TEXT_MAX_CHARS = 1024
CONTAINS_MAX_CHARS = 256
NAME_MAX_CHARS = 128
LABEL_CHARS = 60  # how much of a prompt reports show
TOKEN_ID_MAX = 2**31 - 1
PERPLEXITY_DEFAULT_TOKENS = 1024
PERPLEXITY_MAX_TOKENS = 16384

TokenId = Annotated[int, Field(ge=0, le=TOKEN_ID_MAX)]


class PromptSpec(BaseModel):
    """One reference prompt and what its greedy continuation must be."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str | None = Field(None, min_length=1, max_length=NAME_MAX_CHARS)
    text: str | None = Field(None, min_length=1, max_length=PROMPT_TEXT_MAX_CHARS)
    token_ids: list[TokenId] | None = Field(None, min_length=1, max_length=MAX_PROMPT_IDS)
    expect: str | list[TokenId] | None = Field(
        None, description="the continuation begins with exactly this text (or these token ids)"
    )
    contains: str | None = Field(None, min_length=1, max_length=CONTAINS_MAX_CHARS)
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)

    @field_validator("expect")
    @classmethod
    def _expect(cls, v: str | list[int] | None) -> str | list[int] | None:
        if isinstance(v, str) and not 0 < len(v) <= EXPECT_TEXT_MAX_CHARS:
            raise ValueError(
                f"an expected text must be 1 to {EXPECT_TEXT_MAX_CHARS} characters, not {len(v)}"
            )
        if isinstance(v, list) and not 0 < len(v) <= MAX_NEW_TOKENS:
            raise ValueError(
                f"an expected continuation must be 1 to {MAX_NEW_TOKENS} token ids, not {len(v)}"
            )
        return v

    @model_validator(mode="after")
    def _one_of_each(self) -> PromptSpec:
        if (self.text is None) == (self.token_ids is None):
            raise ValueError("a prompt needs exactly one of 'text' or 'token_ids'")
        if (self.expect is None) == (self.contains is None):
            raise ValueError("a prompt needs exactly one of 'expect' or 'contains'")
        budget = self.max_new_tokens
        if isinstance(self.expect, list) and budget is not None and len(self.expect) > budget:
            raise ValueError(
                f"'expect' lists {len(self.expect)} token ids, more than max_new_tokens ({budget})"
            )
        return self

    @property
    def new_tokens(self) -> int:
        """Tokens to generate: max_new_tokens, else the expected ids' count, else DEFAULT_NEW_TOKENS."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return len(self.expect) if isinstance(self.expect, list) else DEFAULT_NEW_TOKENS

    @property
    def needs_tokenizer(self) -> bool:
        return self.text is not None or isinstance(self.expect, str) or self.contains is not None

    @property
    def label(self) -> str:
        """A bounded name for reports: the name, else the text, else the first token ids."""
        if self.name is not None:
            return q(self.name, LABEL_CHARS)
        if self.text is not None:
            return q(self.text, LABEL_CHARS)
        ids = self.token_ids or []
        return f"token ids {ids[:8]}{'...' if len(ids) > 8 else ''}"


class PerplexitySpec(BaseModel):
    """A ceiling on the model's perplexity over a reference text shipped as one of the pack's files."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    file: str
    max: float = Field(gt=1.0, allow_inf_nan=False, description="largest perplexity that passes")
    max_tokens: int = Field(
        PERPLEXITY_DEFAULT_TOKENS,
        ge=2,
        le=PERPLEXITY_MAX_TOKENS,
        description="the text's first max_tokens tokens are scored",
    )

    @field_validator("file")
    @classmethod
    def _file(cls, v: str) -> str:
        return check_shard_filename(v, what="reference file name")


class Evaluation(BaseModel):
    """The ``evaluation`` block of a manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    prompts: list[PromptSpec] = Field(default_factory=list, max_length=MAX_PROMPTS)
    perplexity: PerplexitySpec | None = None
    eos_token_id: TokenId | None = Field(None, description="greedy decoding stops at this id")
    add_special_tokens: bool = Field(
        True, description="tokenize prompts as the tokenizer's post-processor says"
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Evaluation:
        if not self.prompts and self.perplexity is None:
            raise ValueError("an evaluation needs at least one prompt or a perplexity check")
        return self

    @property
    def needs_tokenizer(self) -> bool:
        return self.perplexity is not None or any(p.needs_tokenizer for p in self.prompts)


def check_prompt_length(field: str, prompt_len: int, new_tokens: int, context: int) -> None:
    """InvalidManifest when a prompt plus its continuation does not fit the model's context."""
    if prompt_len + new_tokens > context:
        raise InvalidManifest(
            f"{field}: the prompt's {prompt_len} tokens plus {new_tokens} new tokens exceed the model's "
            f"context of {context} tokens; shorten the prompt or lower max_new_tokens",
            field=field,
        )


def _check_ids(field: str, ids: list[int], vocab_size: int) -> None:
    bad = next((i for i in ids if i >= vocab_size), None)
    if bad is not None:
        raise InvalidManifest(
            f"{field}: token id {bad} is outside the model's vocabulary of {vocab_size}", field=field
        )


def check_evaluation(
    ev: Evaluation, *, files: Collection[str], context: int | None = None, vocab_size: int | None = None
) -> None:
    """Cross-field rules: the files the block needs are in the pack, token ids fit the vocabulary and the
    prompts fit the context (where the manifest says them). Raises InvalidManifest naming the field."""
    if ev.needs_tokenizer and TOKENIZER_FILE not in files:
        user = next((f"evaluation.prompts[{i}]" for i, p in enumerate(ev.prompts) if p.needs_tokenizer), "")
        field = user or "evaluation.perplexity"
        raise InvalidManifest(
            f"{field} needs the pack's tokenizer, but {TOKENIZER_FILE!r} is not among the manifest's files",
            field=field,
        )
    if ev.perplexity is not None and ev.perplexity.file not in files:
        raise InvalidManifest(
            f"evaluation.perplexity.file {q(ev.perplexity.file)} is not one of the pack's files "
            "(list it in the manifest's 'files')",
            field="evaluation.perplexity.file",
        )
    if vocab_size is not None and ev.eos_token_id is not None:
        _check_ids("evaluation.eos_token_id", [ev.eos_token_id], vocab_size)
    for i, p in enumerate(ev.prompts):
        where = f"evaluation.prompts[{i}]"
        if vocab_size is not None:
            if p.token_ids is not None:
                _check_ids(f"{where}.token_ids", p.token_ids, vocab_size)
            if isinstance(p.expect, list):
                _check_ids(f"{where}.expect", p.expect, vocab_size)
        if context is not None and p.token_ids is not None:
            check_prompt_length(f"{where}.token_ids", len(p.token_ids), p.new_tokens, context)


def _positive_int(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else None


def manifest_context(config: dict[str, Any]) -> tuple[int | None, int | None]:
    """The context length and vocabulary size a manifest's config states (None where it does not)."""
    context = _positive_int(config.get("max_seq_len")) or _positive_int(config.get("max_position_embeddings"))
    return context, _positive_int(config.get("vocab_size"))
