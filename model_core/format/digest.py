"""``Sha256Digest``: a sha256 digest as a value, written ``sha256:<64 lowercase hex>`` in manifests."""

from __future__ import annotations

import hmac
import re

PREFIX = "sha256:"
SHA256_PATTERN = r"^sha256:[0-9a-f]{64}$"
_HEX = re.compile(r"[0-9a-f]{64}")


class Sha256Digest:
    """A sha256 digest; equal digests compare equal in constant time, and ``str()`` is ``sha256:<hex>``."""

    __slots__ = ("hex",)
    hex: str

    def __init__(self, hex_digest: str) -> None:
        if not isinstance(hex_digest, str) or not _HEX.fullmatch(hex_digest):
            raise ValueError(f"{hex_digest!r} is not 64 lowercase hex digits")
        object.__setattr__(self, "hex", hex_digest)

    @classmethod
    def parse(cls, text: object) -> Sha256Digest:
        """The manifest form, ``sha256:`` and 64 lowercase hex digits; ValueError for anything else."""
        if (
            not isinstance(text, str)
            or not text.startswith(PREFIX)
            or not _HEX.fullmatch(text[len(PREFIX) :])
        ):
            raise ValueError(f"{text!r} is not 'sha256:' followed by 64 lowercase hex digits")
        return cls(text[len(PREFIX) :])

    @classmethod
    def of_bytes(cls, digest: bytes) -> Sha256Digest:
        """From the 32 raw bytes of a digest."""
        if len(digest) != 32:
            raise ValueError(f"a sha256 digest has 32 bytes, not {len(digest)}")
        return cls(digest.hex())

    def matches(self, hex_digest: str) -> bool:
        """True when ``hex_digest`` (lowercase hex, as hashlib prints it) is this digest; constant time."""
        return hmac.compare_digest(self.hex, hex_digest)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Sha256Digest is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sha256Digest):
            return NotImplemented
        return self.matches(other.hex)

    def __hash__(self) -> int:
        return hash(self.hex)

    def __str__(self) -> str:
        return PREFIX + self.hex

    def __repr__(self) -> str:
        return f"Sha256Digest({self.hex!r})"
