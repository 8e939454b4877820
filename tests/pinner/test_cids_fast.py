"""canonical_cid's fast path against multiformats: the same key for every CID, the same refusal otherwise."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest
from multiformats import CID, multihash

from pinner.cids import DAG_PB, RAW, _fast_canonical, canonical_cid, cid_bytes_v0, cid_bytes_v1, parse_cid
from pinner.content_errors import InvalidCid

RNG = random.Random(14)
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ=+/- OIl"


def _reference(text: str) -> str | None:
    """multiformats' answer: the normalized key, or None when it refuses the text."""
    try:
        return str(parse_cid(text))
    except InvalidCid:
        return None


def _ours(text: str) -> str | None:
    try:
        return canonical_cid(text)
    except InvalidCid:
        return None


def _v1(codec: int, digest: bytes) -> str:
    return "b" + base64.b32encode(cid_bytes_v1(codec, digest)).decode().lower().rstrip("=")


COMMON = (
    [str(CID.decode(cid_bytes_v0(d))) for d in (RNG.randbytes(32) for _ in range(100))]
    + [_v1(codec, RNG.randbytes(32)) for codec in (RAW, DAG_PB) for _ in range(100)]
    + [str(CID.decode(cid_bytes_v0(d))) for d in (bytes(32), b"\xff" * 32)]
    + [_v1(c, d) for c in (RAW, DAG_PB) for d in (bytes(32), b"\xff" * 32)]
)


def _mutations(text: str) -> list[str]:
    """Near misses: one character replaced, the case of one flipped, cut or grown, the last one's bits."""
    out = []
    for _ in range(6):
        i = RNG.randrange(len(text))
        out.append(text[:i] + RNG.choice(ALPHABET) + text[i + 1 :])
        if text[i].isalpha():
            out.append(text[:i] + text[i].swapcase() + text[i + 1 :])
    out += [text[:-1], text + "a", text + "1", " " + text, text + "\n", text.upper(), text.lower()]
    # CIDv1's last base32 character carries 2 unused bits: a non-zero one is a non-canonical spelling
    out += [text[:-1] + c for c in "abcdefghijklmnopqrstuvwxyz234567" if c != text[-1]]
    return out


def _other_forms() -> list[str]:
    """Valid CIDs the fast path leaves to multiformats: other bases, codecs and hash functions."""
    digest = multihash.digest(b"data", "sha2-256")
    return [
        str(CID("base58btc", 1, "raw", digest)),  # js-ipfs' z...
        str(CID("base32", 1, "raw", digest)).upper(),  # base32upper B...
        str(CID("base36", 1, "dag-pb", digest)),
        str(CID("base32", 1, "dag-cbor", digest)),  # bafyrei...: refused (codec)
        str(CID("base32", 1, "dag-json", digest)),
        str(CID("base32", 1, "raw", multihash.digest(b"data", "sha2-512"))),  # refused (hash)
        str(CID("base32", 1, "raw", multihash.digest(b"data", "identity"))),
        str(CID("base32", 1, "raw", bytes((0x12, 16)) + hashlib.sha256(b"x").digest()[:16])),  # short
        "",
        "b",
        "Qm",
        "bafy",
        "bafk" + "a" * 55,
        "Qm" + "1" * 44,
        "Q" + "m" * 45,
        "bafy" + "7" * 55,
        "Qm-not-a-cid",
    ]


@pytest.mark.parametrize("text", COMMON[:3] + COMMON[100:103] + COMMON[200:203])
def test_common_spellings_take_the_fast_path(text: str) -> None:
    assert _fast_canonical(text) == text


def test_fast_path_agrees_with_multiformats_on_random_cids() -> None:
    for text in COMMON:
        assert _fast_canonical(text) == text == _reference(text)


def test_fast_path_agrees_with_multiformats_on_near_misses() -> None:
    checked = accepted = 0
    for text in COMMON[::4]:
        for bad in _mutations(text):
            fast = _fast_canonical(bad)
            ref = _reference(bad)
            assert _ours(bad) == ref, bad
            if fast is not None:  # the fast path may only accept what multiformats accepts, spelled alike
                assert fast == ref == bad, bad
                accepted += 1
            checked += 1
    assert checked > 1000 and accepted > 0  # some one-character changes are other valid CIDs


def test_a_non_canonical_last_character_is_refused_like_multiformats_does() -> None:
    # CIDv1's last base32 character has 2 unused bits: set, the text is not a canonical spelling
    text = COMMON[150]
    spellings = [text[:-1] + c for c in "abcdefghijklmnopqrstuvwxyz234567"]
    refused = [t for t in spellings if _reference(t) is None]
    assert len(refused) == 24
    for t in spellings:
        assert _ours(t) == _reference(t)
        assert _fast_canonical(t) == (None if t in refused else t)


@pytest.mark.parametrize("text", _other_forms())
def test_other_forms_fall_back_to_multiformats(text: str) -> None:
    assert _fast_canonical(text) is None
    assert _ours(text) == _reference(text)


def test_refusal_names_the_text_as_parse_cid_does() -> None:
    bad = COMMON[150][:10] + "1" + COMMON[150][11:]  # "1" is not a base32 digit
    with pytest.raises(InvalidCid) as ours:
        canonical_cid(bad)
    with pytest.raises(InvalidCid) as ref:
        parse_cid(bad)
    assert (ours.value.cid, str(ours.value)) == (ref.value.cid, str(ref.value))
