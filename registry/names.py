"""Registry names: namespaces, models and pointer tags, and the references users type (``ns/model@tag`` or a CID)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from model_core.errors import bounded, q
from pinner.cids import cid_str, parse_cid
from pinner.content_errors import InvalidCid
from registry.errors import InvalidName

# Namespaces and model names as the Hugging Face Hub has them: case kept (shown as created), unique and looked up
# case-insensitively (``name_key``); letters, digits, '.', '_', '-', up to 96; no '--' or '..'; they start with a
# letter or digit and end with a letter, digit or '_'.
NAME_PATTERN = r"^(?!.*(?:--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$"
# Publisher and node names: lowercase, as before.
PLAIN_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_MAX = 96
_NAME = re.compile(NAME_PATTERN)
_PLAIN = re.compile(PLAIN_NAME_PATTERN)
_TAG = re.compile(TAG_PATTERN)
DEFAULT_TAG = "latest"


def check_name(value: str, what: str = "name") -> str:
    """A namespace or model name, case kept: see NAME_PATTERN."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidName(
            f"{what} {q(value, 80)} is not allowed: use 1-{NAME_MAX} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, not ending with '-' or '.', without '--' or '..'",
            name=bounded(value, 80),
        )
    return value


def name_key(value: str) -> str:
    """What namespaces and model names are unique by and looked up by: the name case-folded (ASCII)."""
    return value.lower()


def check_plain_name(value: str, what: str = "name") -> str:
    """A publisher or node name: lowercase letters, digits, '.', '_', '-'; up to 64; starts alphanumeric."""
    if not isinstance(value, str) or not _PLAIN.fullmatch(value) or ".." in value:
        raise InvalidName(
            f"{what} {q(value, 80)} is not allowed: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            name=bounded(value, 80),
        )
    return value


def check_tag(value: str) -> str:
    """A pointer tag such as ``latest`` or ``v1.2``."""
    if not isinstance(value, str) or not _TAG.fullmatch(value) or ".." in value:
        raise InvalidName(
            f"pointer tag {q(value, 80)} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            name=bounded(value, 80),
        )
    return value


@dataclass(frozen=True, slots=True)
class ModelRef:
    namespace: str
    model: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.model}"


@dataclass(frozen=True, slots=True)
class PackRef:
    """What ``show``/``pull`` accept: a pack CID, or a model with an optional tag (default ``latest``)."""

    cid: str | None = None
    model: ModelRef | None = None
    tag: str = DEFAULT_TAG


@lru_cache(maxsize=65536)
def normalize_cid(text: str) -> str:
    """The canonical text of a CID (base58btc v0, base32 v1); InvalidCid when it is not one we verify.

    Memoized: parsing a CID costs far more than serving a cached read, and the result is a pure function.
    """
    return cid_str(parse_cid(text))


def parse_model_name(text: str) -> ModelRef:
    ns, sep, model = text.partition("/")
    if not sep:
        raise InvalidName(f"{text!r} is not NAMESPACE/MODEL", name=text)
    return ModelRef(check_name(ns, "namespace"), check_name(model, "model name"))


def parse_ref(text: str) -> PackRef:
    """``ns/model``, ``ns/model@tag`` or a CID."""
    if "/" not in text:
        try:
            return PackRef(cid=normalize_cid(text))
        except InvalidCid:
            raise InvalidName(
                f"{text!r} is neither NAMESPACE/MODEL[@TAG] nor a pack CID", name=text
            ) from None
    name, _, tag = text.partition("@")
    return PackRef(model=parse_model_name(name), tag=check_tag(tag) if tag else DEFAULT_TAG)
