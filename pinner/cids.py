"""CIDs as verified values: parsing and spelling them, building binary CIDs fast, re-hashing blocks.

Everything that takes bytes from a disk, a peer or a CAR checks them here against the CID asked for.
The blockstore, CAR and UnixFS code accept only sha2-256 multihashes over the raw and dag-pb codecs
(what ``ipfs add`` makes: ``parse_cid``, ``verify_block``); CIDs that IPFS nodes send are read with
any codec and hash function (``decode_cid``, ``normalize_cid``, ``rehash_matches``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import TYPE_CHECKING

from pinner.content_errors import InvalidBlock, InvalidCid

if TYPE_CHECKING:  # multiformats costs ~50 ms to import: only where a CID object is built
    from multiformats import CID

SHA2_256 = 0x12
RAW = 0x55
DAG_PB = 0x70
SUPPORTED_CODECS = {RAW: "raw", DAG_PB: "dag-pb"}


def cid_bytes_v0(digest: bytes) -> bytes:
    """Binary CIDv0 (dag-pb, sha2-256) of a 32-byte digest."""
    return b"\x12\x20" + digest


def cid_bytes_v1(codec: int, digest: bytes) -> bytes:
    """Binary CIDv1 with sha2-256 for the raw (0x55) or dag-pb (0x70) codec."""
    return bytes((0x01, codec, 0x12, 0x20)) + digest


def split_cid(cid_bytes: bytes) -> tuple[int, int, bytes]:
    """(version, codec, multihash bytes) of a binary CID; raises InvalidCid."""
    if len(cid_bytes) == 34 and cid_bytes[:2] == b"\x12\x20":
        return 0, DAG_PB, cid_bytes
    if len(cid_bytes) < 4 or cid_bytes[0] != 0x01:
        raise InvalidCid(f"not a CIDv0 or CIDv1: {cid_bytes.hex()}", cid=cid_bytes.hex())
    codec, pos = _varint(cid_bytes, 1)
    return 1, codec, cid_bytes[pos:]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise InvalidCid(f"truncated varint in CID {buf.hex()}", cid=buf.hex())
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def cid_from_bytes(cid_bytes: bytes) -> CID:
    """A CID object from binary form, printing as Kubo does (base58btc v0, base32 v1)."""
    from multiformats import CID

    cid = CID.decode(cid_bytes)
    return cid if cid.version == 0 else cid.set(base="base32")


def block_key(cid: CID | bytes) -> bytes:
    """The key blocks are stored under: the multihash, as Kubo keys its blockstore."""
    raw = bytes(cid)
    return split_cid(raw)[2]


def parse_cid(text: str | bytes) -> CID:
    """Parses a CID string (any multibase) or binary CID, refusing codecs and hashes we cannot verify."""
    from multiformats import CID

    shown = _shown(text if isinstance(text, str) else text.hex())
    try:
        cid = CID.decode(text)
        if cid.version == 1:
            cid = cid.set(base="base32")
    except Exception as e:
        raise InvalidCid(f"{shown!r} is not a valid CID: {e}", cid=shown) from e
    check_supported(cid, shown)
    return cid


def canonical_cid(text: str) -> str:
    """``str(parse_cid(text))`` (the normalized key: CIDv0 base58btc, CIDv1 base32), raising as it does.

    The spellings ``ipfs add`` prints (``Qm...`` CIDv0, ``bafy...``/``bafk...`` base32 CIDv1 over dag-pb
    or raw with sha2-256) are decoded here without multiformats' run-time type checks; they are taken only
    when re-encoding the decoded bytes gives back exactly ``text``. Anything else goes through parse_cid.
    """
    fast = _fast_canonical(text)
    return fast if fast is not None else str(parse_cid(text))


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
# "b" + base32 of 0x01 <dag-pb|raw> 0x12 0x20 <32 digest bytes> (288 bits in 58 digits of 5): "afybei"/"afkrei"
# spell the first 30 bits, the 7th digit's first two bits are the prefix's last two (0: a-h), and the last
# digit's two unused bits are 0 in the canonical spelling (a e i m q u y 4).
_V1_PREFIXES = (bytes((0x01, DAG_PB, 0x12, 0x20)), bytes((0x01, RAW, 0x12, 0x20)))
_V1_CANONICAL = re.compile(r"baf(?:ybei|krei)[a-h][a-z2-7]{50}[aeimquy4]")


def _fast_canonical(text: str) -> str | None:
    """``text`` when it is the canonical spelling of a sha2-256 raw/dag-pb CID; None to ask multiformats."""
    if len(text) == 59 and text.startswith(("bafy", "bafk")):
        return text if _V1_CANONICAL.fullmatch(text) else None
    if len(text) == 46 and text.startswith("Qm"):
        value = 0
        for ch in text:
            digit = _B58_INDEX.get(ch)
            if digit is None:
                return None
            value = value * 58 + digit
        if value.bit_length() > 34 * 8:
            return None
        raw = value.to_bytes(34, "big")
        return text if raw[:2] == b"\x12\x20" and _b58encode(raw) == text else None
    return None


def _fast_cid_str(raw: bytes) -> str | None:
    """The canonical text of a binary sha2-256 CIDv0, or CIDv1 over raw or dag-pb; None for any other."""
    if len(raw) == 34 and raw[:2] == b"\x12\x20":
        return _b58encode(raw)
    if len(raw) == 36 and raw[:4] in _V1_PREFIXES:
        return "b" + base64.b32encode(raw).decode().lower().rstrip("=")
    return None


def _b58encode(raw: bytes) -> str:
    value, out = int.from_bytes(raw, "big"), []
    while value:
        value, digit = divmod(value, 58)
        out.append(_B58[digit])
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + "".join(reversed(out))


def _shown(text: str, limit: int = 128) -> str:
    """``text`` cut for quoting in an error (a hostile CID may be megabytes long)."""
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more characters]"


def check_supported(cid: CID, shown: str | None = None) -> None:
    """Raises InvalidCid unless the CID is sha2-256 over raw or dag-pb."""
    shown = shown or str(cid)
    if cid.hashfun.code != SHA2_256 or len(cid.raw_digest) != 32:
        raise InvalidCid(
            f"CID {shown} uses hash function {cid.hashfun.name}; only sha2-256 is supported", cid=shown
        )
    if cid.codec.code not in SUPPORTED_CODECS:
        raise InvalidCid(
            f"CID {shown} uses codec {cid.codec.name}; only raw and dag-pb are supported", cid=shown
        )


def cid_str(cid: CID | bytes) -> str:
    """The canonical text form (base58btc for v0, base32 for v1).

    The binary CIDs ``ipfs add`` makes (sha2-256 over dag-pb or raw) are spelled here without
    multiformats; anything else goes through it.
    """
    if isinstance(cid, bytes):
        fast = _fast_cid_str(cid)
        if fast is not None:
            return fast
    from multiformats import CID

    c = cid if isinstance(cid, CID) else CID.decode(cid)
    return str(c) if c.version == 0 else c.encode("base32")


def decode_cid(text: str) -> CID:
    """Decodes a CID from any multibase text, with any codec and hash function (what nodes may send).

    Raises InvalidCid naming the offending text.
    """
    from multiformats import CID

    try:
        return CID.decode(text.strip())
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCid(f"{_shown(text)!r} is not a valid CID: {exc}", cid=_shown(text)) from exc


def normalize_cid(text: str) -> str:
    """The canonical text of a CID: CIDv0 stays base58btc (`Qm...`), CIDv1 is printed in base32.

    js-ipfs prints CIDv1 in base58btc (`zb2...`) where Kubo prints base32 (`bafy...`); comparing CIDs
    from several nodes only works on one spelling.
    """
    fast = _fast_canonical(text)  # already canonical (the spellings Kubo prints): no decoding
    if fast is not None:
        return fast
    cid = decode_cid(text)
    if cid.version == 0:
        return str(cid)
    return str(cid.set(base="base32"))


def block_matches(cid: CID | bytes, data: bytes | memoryview) -> bool:
    """True when sha2-256 of ``data`` is the CID's full 32-byte digest (constant-time compare)."""
    mh = block_key(cid)
    if len(mh) != 34 or mh[:2] != b"\x12\x20":
        return False
    return hmac.compare_digest(hashlib.sha256(data).digest(), mh[2:])


def verify_block(cid: CID | bytes, data: bytes | memoryview) -> None:
    """Raises InvalidBlock naming the CID when ``data`` does not hash to it."""
    if not block_matches(cid, data):
        shown = cid_str(cid)
        raise InvalidBlock(f"block does not match its CID {shown}", cid=shown)


def rehash_matches(cid: CID, data: bytes) -> bool:
    """True when ``data`` re-hashed with the CID's own hash function is the CID's digest.

    Identity-hashed CIDs carry their bytes inline and are compared directly. A digest shorter than its
    hash function's full length is refused (False): a truncated digest is cheap to collide. Raises
    InvalidCid when the hash function has no implementation here.
    """
    full = cid.hashfun.max_digest_size
    if full is not None and len(cid.raw_digest) != full:
        return False
    try:
        actual = cid.hashfun.digest(data, size=len(cid.raw_digest))
    except (ValueError, KeyError, TypeError) as exc:
        shown = str(cid)
        raise InvalidCid(f"hash function {cid.hashfun.name} of {shown} is not available", cid=shown) from exc
    return hmac.compare_digest(bytes(actual), bytes(cid.digest))
