"""IPNS names: the libp2p PublicKey protobuf of an Ed25519 key and its CIDv1 ``libp2p-key`` (``k51...``).

The name of an Ed25519 key is the CIDv1 (codec ``libp2p-key`` 0x72) of the *identity* multihash of
``PublicKey{Type: Ed25519, Data: <32 bytes>}``, written in base36. Names given as legacy base58
peer IDs (``12D3KooW...``, ``Qm...``) and in other multibases are read too.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from multiformats import CID, multibase

from registry.ipns.protobuf import (
    LEN,
    VARINT,
    WireError,
    decode_fields,
    decode_varint,
    encode_varint,
    field_bytes,
    field_varint,
)
from registry.trust.errors import InvalidIpnsName, IpnsKeyMismatch, IpnsMalformed, IpnsUnsupportedKey
from registry.trust.keys import PublicKey

KEY_TYPE_ED25519 = 1
LIBP2P_KEY_CODEC = "libp2p-key"
NAME_MAX_CHARS = 256
_KEY_TYPES = {0: "RSA", 1: "Ed25519", 2: "Secp256k1", 3: "ECDSA"}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_CIDV1_LIBP2P_KEY = b"\x01\x72"


# base36 written out here: it is the only multibase IPNS names use, and the generic multibase
# codec costs more per call than an Ed25519 verification.
def _base36_encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(_B36[r])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "k" + "0" * zeros + "".join(reversed(digits))


def _base36_decode(text: str) -> bytes:
    body = text[1:].lower()
    if not body or any(c not in _B36 for c in body):
        raise ValueError("not base36")
    zeros = len(body) - len(body.lstrip("0"))
    n = int(body, 36)
    return b"\x00" * zeros + (n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b"")


def _name_from_multihash(mh: bytes) -> str:
    return _base36_encode(_CIDV1_LIBP2P_KEY + mh)


def libp2p_public_key_bytes(key: PublicKey) -> bytes:
    """The libp2p ``PublicKey`` protobuf of an Ed25519 key (deterministic: Type then Data)."""
    return field_varint(1, KEY_TYPE_ED25519) + field_bytes(2, key.raw)


def parse_libp2p_public_key(data: bytes) -> PublicKey:
    """An Ed25519 key from a libp2p ``PublicKey`` protobuf.

    Raises:
        IpnsMalformed: not a PublicKey protobuf.
        IpnsUnsupportedKey: another key type.
    """
    try:
        fields = decode_fields(data, {1: VARINT, 2: LEN})
    except WireError as e:
        raise IpnsMalformed(f"the public key is not a libp2p PublicKey protobuf: {e}") from None
    key_type, raw = fields.get(1), fields.get(2)
    if not isinstance(key_type, int) or not isinstance(raw, bytes):
        raise IpnsMalformed("the libp2p PublicKey lacks its Type or Data")
    if key_type != KEY_TYPE_ED25519:
        kind = _KEY_TYPES.get(key_type, f"type {key_type}")
        raise IpnsUnsupportedKey(f"the record is signed with a {kind} key; only Ed25519 is supported")
    if len(raw) != 32:
        raise IpnsMalformed(f"the Ed25519 public key has {len(raw)} bytes, not 32")
    return PublicKey(raw)


def ipns_name(key: PublicKey) -> str:
    """The IPNS name (``k51...``) of an Ed25519 public key."""
    pb = libp2p_public_key_bytes(key)
    return _name_from_multihash(b"\x00" + encode_varint(len(pb)) + pb)


@dataclass(frozen=True)
class IpnsName:
    """A parsed IPNS name: the multihash of the owner's libp2p PublicKey."""

    hash_code: int  # 0x00 identity or 0x12 sha2-256
    digest: bytes

    @functools.cached_property
    def canonical(self) -> str:
        return _name_from_multihash(
            encode_varint(self.hash_code) + encode_varint(len(self.digest)) + self.digest
        )

    def public_key(self, embedded: bytes | None) -> PublicKey:
        """The key that must have signed a record for this name.

        ``embedded`` is the record's ``pubKey`` field, if any: it must be the name's key.

        Raises:
            IpnsKeyMismatch: the embedded key is not this name's key.
            IpnsMalformed / IpnsUnsupportedKey: the key cannot be used.
        """
        if self.hash_code == 0:
            if embedded is not None and not hmac.compare_digest(embedded, self.digest):
                raise IpnsKeyMismatch("the record's public key is not the key of the IPNS name")
            return parse_libp2p_public_key(self.digest)
        if embedded is None:
            raise IpnsMalformed("the IPNS name hashes its key, and the record carries no public key")
        if not hmac.compare_digest(hashlib.sha256(embedded).digest(), self.digest):
            raise IpnsKeyMismatch("the record's public key does not hash to the IPNS name")
        return parse_libp2p_public_key(embedded)


def parse_ipns_name(name: str) -> IpnsName:
    """Read an IPNS name: ``k51...`` (or any multibase CIDv1 libp2p-key), ``/ipns/...``, or a peer ID.

    Raises:
        InvalidIpnsName: with the reason.
    """
    if len(name) > NAME_MAX_CHARS:
        raise InvalidIpnsName(f"IPNS name is longer than {NAME_MAX_CHARS} characters", name=name[:64])
    text = name.removeprefix("/ipns/")
    return _parse(name, text)


@functools.lru_cache(maxsize=4096)
def _parse(name: str, text: str) -> IpnsName:
    try:
        if text[:1] in ("k", "K"):
            raw = _base36_decode(text)
            if not raw.startswith(_CIDV1_LIBP2P_KEY):
                raise InvalidIpnsName(f"{name!r} is not a CIDv1 libp2p-key", name=name)
            mh_bytes = raw[len(_CIDV1_LIBP2P_KEY) :]
        elif text.startswith(("Qm", "1")):
            mh_bytes = bytes(multibase.get("base58btc").raw_decoder(text))
        else:
            cid = CID.decode(text)
            if cid.version != 1 or cid.codec.name != LIBP2P_KEY_CODEC:
                raise InvalidIpnsName(
                    f"{name!r} is a CID with codec {cid.codec.name}, not {LIBP2P_KEY_CODEC}", name=name
                )
            mh_bytes = bytes(cid.digest)
        code, digest = _unwrap_multihash(mh_bytes)
    except InvalidIpnsName:
        raise
    except Exception as e:  # multiformats raises several unrelated types for bad input
        raise InvalidIpnsName(f"{name!r} is not an IPNS name: {e}", name=name) from None
    if code not in (0x00, 0x12):
        raise InvalidIpnsName(f"{name!r} uses multihash 0x{code:x}; expected identity or sha2-256", name=name)
    return IpnsName(hash_code=code, digest=digest)


def _unwrap_multihash(mh: bytes) -> tuple[int, bytes]:
    code, pos = decode_varint(mh, 0)
    length, pos = decode_varint(mh, pos)
    if len(mh) - pos != length:
        raise ValueError(f"multihash digest has {len(mh) - pos} bytes, its header says {length}")
    return code, mh[pos:]
