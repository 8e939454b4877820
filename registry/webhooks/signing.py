"""Standard Webhooks signatures (https://www.standardwebhooks.com/, "Signature scheme"): the receiver gets
``webhook-id``, ``webhook-timestamp`` (unix seconds) and ``webhook-signature``, a space-separated list of
``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``; the key is the secret's bytes after ``whsec_``.
During a secret rotation's grace period the list carries one signature per secret (new first).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 bytes


def new_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def secret_text(raw: bytes) -> str:
    """What the admin is shown once: ``whsec_`` + base64 of the key."""
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def secret_bytes(text: str) -> bytes:
    """The key of a ``whsec_...`` secret; ValueError when it is not one."""
    if not text.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ and base64") from None


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{msg_id}.{timestamp}.{body}``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three ``webhook-*`` headers, signed with every key of ``keys`` (the current one first)."""
    if not keys:
        raise ValueError("no signing key")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(k, msg_id, timestamp, body) for k in keys),
    }
