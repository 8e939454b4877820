"""The few bytes of protobuf wire format IPNS needs (IpnsEntry, libp2p PublicKey), written by hand.

Decoding is strict about what could make two readers disagree: truncated fields, over-long varints,
and a known field given twice are refused; unknown fields are skipped as protobuf requires.
"""

from __future__ import annotations

from collections.abc import Mapping

VARINT = 0
I64 = 1
LEN = 2
I32 = 5


class WireError(ValueError):
    """The bytes are not valid protobuf wire format."""


def encode_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varints here are unsigned")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for i in range(10):
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if result >= 1 << 64:
                raise WireError("varint larger than 64 bits")
            return result, pos
    raise WireError("varint longer than 10 bytes")


def field_varint(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def field_bytes(number: int, value: bytes) -> bytes:
    return encode_varint(number << 3 | LEN) + encode_varint(len(value)) + value


def decode_fields(buf: bytes, known: Mapping[int, int]) -> dict[int, int | bytes]:
    """Fields of one message by number: ints for varints, bytes for length-delimited.

    ``known`` maps each field number the caller reads to its expected wire type.

    Raises:
        WireError: malformed bytes, a known field twice, or a known field with the wrong wire type.
    """
    fields: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = decode_varint(buf, pos)
        elif wire == LEN:
            length, pos = decode_varint(buf, pos)
            if pos + length > len(buf):
                raise WireError(f"field {number} runs past the end")
            value, pos = buf[pos : pos + length], pos + length
        elif wire in (I64, I32):
            size = 8 if wire == I64 else 4
            if pos + size > len(buf):
                raise WireError(f"field {number} runs past the end")
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise WireError(f"unsupported wire type {wire} for field {number}")
        if number in known:
            if known[number] != wire:
                raise WireError(f"field {number} has wire type {wire}, expected {known[number]}")
            if number in fields:
                raise WireError(f"field {number} appears twice")
            fields[number] = value
    return fields
