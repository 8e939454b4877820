"""Channel private keys encrypted at rest with a key-encryption key (KEK) from settings.

Format: ``b"mpk1" || nonce (12 bytes) || AES-256-GCM(ciphertext || tag)``. The optional ``aad``
binds a sealed key to what it is for (e.g. the channel name), so a sealed key copied onto another
channel's row does not open there.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from registry.trust.errors import KeySealError

MAGIC = b"mpk1"
NONCE_BYTES = 12
KEK_BYTES = 32


def _check_kek(kek: bytes) -> None:
    if len(kek) != KEK_BYTES:
        raise KeySealError(f"the key-encryption key must be {KEK_BYTES} bytes, got {len(kek)}")


def generate_kek() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def parse_kek(text: str) -> bytes:
    """A KEK from its base64 form (as in ``ipns.key_encryption_key``)."""
    try:
        kek = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeySealError("the key-encryption key is not valid base64") from None
    _check_kek(kek)
    return kek


def seal_private_key(raw: bytes, kek: bytes, *, aad: bytes = b"") -> bytes:
    """Encrypt a raw private key seed under ``kek``; ``aad`` must be given again to open it."""
    _check_kek(kek)
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(kek).encrypt(nonce, raw, MAGIC + aad)


def open_private_key(sealed: bytes, kek: bytes, *, aad: bytes = b"") -> bytes:
    """Decrypt what ``seal_private_key`` produced.

    Raises:
        KeySealError: wrong KEK, wrong ``aad``, or tampered/truncated bytes.
    """
    _check_kek(kek)
    if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + NONCE_BYTES + 16:
        raise KeySealError("the sealed key is not in the mpk1 format")
    nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES :], MAGIC + aad)
    except InvalidTag:
        raise KeySealError(
            "the sealed key does not open: wrong key-encryption key, wrong binding, or tampered bytes"
        ) from None
