"""Proof of possession for key registration: the registry issues a challenge, the key signs a statement.

A challenge is ``mpkc1.<nonce>.<expiry>.<mac>``: a random nonce, an expiry (Unix seconds) and an HMAC
over both, the publisher and the key id, under a secret the registry derives from its key-encryption key
(so every daemon sharing that key accepts the others' challenges). It holds no state until it is used:
then its nonce is remembered until it expires, and a second use in this process is refused.

The key signs ``registration_statement(publisher, key_id, challenge)``; the statement names the
publisher and the key, and starts with a line no manifest or DSSE envelope starts with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

PREFIX = "mpkc1"
NONCE_BYTES = 16
CHALLENGE_MAX_LEN = 128
_SHAPE = re.compile(r"^mpkc1\.[A-Za-z0-9_-]{22}\.[0-9]{1,12}\.[A-Za-z0-9_-]{43}$")
STATEMENT_HEADER = "modelpack signing-key registration v1"


def registration_statement(publisher: str, key_id: str, challenge: str) -> bytes:
    """The bytes the key signs to prove that the registrant holds it."""
    return f"{STATEMENT_HEADER}\npublisher: {publisher}\nkey: {key_id}\nchallenge: {challenge}\n".encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Challenge:
    challenge: str
    statement: bytes
    expires_at: float  # Unix seconds


class ChallengeError(Exception):
    """The challenge is malformed, for another publisher or key, expired, or already used."""


class Challenges:
    """Issues and redeems registration challenges (stateless until redeemed)."""

    def __init__(self, secret: bytes | None = None, ttl_s: float = 300.0) -> None:
        seed = secret if secret is not None else secrets.token_bytes(32)
        self._key = hmac.new(seed, b"modelpack key-registration challenge", hashlib.sha256).digest()
        self.ttl_s = ttl_s
        self._used: dict[str, float] = {}

    def _mac(self, nonce: str, expires: int, publisher_id: int, key_id: str) -> str:
        msg = f"{PREFIX}\n{nonce}\n{expires}\n{publisher_id}\n{key_id}".encode()
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    def issue(self, publisher_id: int, publisher: str, key_id: str, now: float | None = None) -> Challenge:
        now = time.time() if now is None else now
        nonce = _b64(secrets.token_bytes(NONCE_BYTES))
        expires = int(now + self.ttl_s)
        text = f"{PREFIX}.{nonce}.{expires}.{self._mac(nonce, expires, publisher_id, key_id)}"
        return Challenge(text, registration_statement(publisher, key_id, text), float(expires))

    def statement(self, publisher: str, key_id: str, challenge: str) -> bytes:
        """What the key must have signed for ``challenge`` (bounded: a long challenge is cut)."""
        return registration_statement(publisher, key_id, challenge[:CHALLENGE_MAX_LEN])

    def redeem(self, challenge: str, publisher_id: int, key_id: str, now: float | None = None) -> None:
        """Accept ``challenge`` once, for this publisher and key, before it expires.

        Raises:
            ChallengeError: with a sentence saying why.
        """
        now = time.time() if now is None else now
        if len(challenge) > CHALLENGE_MAX_LEN or not _SHAPE.match(challenge):
            raise ChallengeError("the challenge is not one this registry issued (POST /v1/key-challenges)")
        _, nonce, expires_s, mac = challenge.split(".")
        expires = int(expires_s)
        if not hmac.compare_digest(mac, self._mac(nonce, expires, publisher_id, key_id)):
            raise ChallengeError("the challenge was not issued to this publisher for this key")
        if expires < now:
            raise ChallengeError("the challenge has expired; ask for a new one")
        self._used = {n: t for n, t in self._used.items() if t >= now}
        if nonce in self._used:
            raise ChallengeError("the challenge was already used; ask for a new one")
        self._used[nonce] = float(expires)
