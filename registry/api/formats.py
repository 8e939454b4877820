"""Regular expressions for the strings the API takes (CIDs, IPNS names, names, keys), written for the OpenAPI
document: every string a pattern matches is one the handlers accept, so a generated request is never refused
for its form. Where a format is wider than a regular expression can state exactly (any multibase CID, any
IPNS name form), the pattern names the canonical subset that clients send; the handlers still take the rest.
"""

from __future__ import annotations

import re

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _encode(data: bytes, alphabet: str) -> str:
    n, out = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, len(alphabet))
        out = alphabet[r] + out
    return out


def _interval(prefix: bytes, free: int, alphabet: str) -> str:
    """A pattern for numerals (in ``alphabet``) strictly between ``prefix + 00..`` and ``prefix + ff..``.

    Every match decodes to ``prefix`` followed by ``free`` bytes; the two ends themselves are left out.
    """
    lo, hi = _encode(prefix + b"\0" * free, alphabet), _encode(prefix + b"\xff" * free, alphabet)
    assert len(lo) == len(hi)
    i = next(k for k in range(len(lo)) if lo[k] != hi[k])
    between = alphabet[alphabet.index(lo[i]) + 1 : alphabet.index(hi[i])]
    assert between, (lo, hi)
    cls = "".join(re.escape(c) for c in alphabet)
    return f"{re.escape(lo[:i])}[{re.escape(between)}][{cls}]{{{len(lo) - i - 1}}}"


def _no_double_dot(body: str) -> str:
    return rf"^(?!.*\.\.){body}$"


# Namespaces and model names (case kept, as the Hugging Face Hub: registry.names.NAME_PATTERN); publisher and
# node names (lowercase); pointer tags ('..' is refused inside one too).
_NAME_BODY = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_NO_DOUBLES = r"(?!.*(?:--|\.\.))"
NAME = rf"^{_NO_DOUBLES}{_NAME_BODY}$"
MODEL_REF = rf"^{_NO_DOUBLES}{_NAME_BODY}/{_NAME_BODY}$"  # ns/model
PLAIN_NAME = _no_double_dot(r"[a-z0-9][a-z0-9._-]{0,63}")
TAG = _no_double_dot(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# sha2-256 CIDs over raw or dag-pb: CIDv1 in base32 (the 8th character ends the prefix, the last carries 3 bits), CIDv0 in base58btc.
_CID_V1 = r"baf(?:krei|ybei)[a-h][a-z2-7]{50}[aeimquy4]"
_CID_V0 = _interval(b"\x12\x20", 32, _B58)
CID = rf"^(?:{_CID_V1}|{_CID_V0})$"
# Ed25519 IPNS names: CIDv1 libp2p-key, identity multihash of the protobuf key, base36 ("k51...").
_IPNS_K51 = "k" + _interval(b"\x01\x72\x00\x24\x08\x01\x12\x20", 32, _B36)
IPNS_NAME = rf"^{_IPNS_K51}$"
# Raw 32-byte Ed25519 keys in base64 (the last character carries 2 bits), bare or as an SPKI PEM block.
_RAW_KEY = r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="
PUBLIC_KEY = (
    rf"^(?:{_RAW_KEY}|-----BEGIN PUBLIC KEY-----\n"
    rf"MCowBQYDK2VwAyEA{_RAW_KEY}\n-----END PUBLIC KEY-----\n?)$"
)
SHA256 = r"^(?:sha256:)?[0-9a-f]{64}$"
BASE64URL = r"^[A-Za-z0-9_-]*$"
