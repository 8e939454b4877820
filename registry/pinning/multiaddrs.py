"""Multiaddr text checked before it reaches a node (`origins`): known protocols, each with a valid value."""

from __future__ import annotations

import ipaddress
import re

from multiformats import CID, multihash
from multiformats.multibase import decode as mb_decode

from registry.errors import BadRequest

_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)
_PORTS = {"tcp", "udp", "dccp", "sctp"}
_HOSTS = {"dns", "dns4", "dns6", "dnsaddr"}
_PEERS = {"p2p", "ipfs"}
_BARE = {
    "quic", "quic-v1", "ws", "wss", "tls", "noise", "http", "https", "p2p-circuit", "webtransport",
    "webrtc", "webrtc-direct", "p2p-webrtc-star", "p2p-websocket-star", "utp", "udt", "yamux", "mplex",
}  # fmt: skip
_VALUED = {"certhash", "sni", "ip6zone", "garlic64", "garlic32", "onion", "onion3", "http-path"}
MAX_LEN = 1024


class InvalidMultiaddr(BadRequest):
    code = "invalid_multiaddr"


def _shown(text: str) -> str:
    return text if len(text) <= 128 else f"{text[:128]}...[{len(text) - 128} more characters]"


def _peer_ok(value: str) -> bool:
    try:
        if value.startswith(("Qm", "1")):
            multihash.unwrap(mb_decode("z" + value))
            return True
        return CID.decode(value).codec.name == "libp2p-key"
    except (ValueError, KeyError, TypeError):
        return False


def _value_ok(proto: str, value: str) -> bool:
    try:
        if proto == "ip4":
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv4Address)
        if proto == "ip6":
            return isinstance(ipaddress.ip_address(value), ipaddress.IPv6Address)
    except ValueError:
        return False
    if proto in _PORTS:
        return value.isascii() and value.isdigit() and int(value) <= 65535
    if proto in _HOSTS:
        return bool(_HOST.match(value))
    if proto in _PEERS:
        return _peer_ok(value)
    return bool(value) and value.isprintable()


def check_multiaddr(text: str, what: str = "origin") -> str:
    """``text`` when it is a well-formed multiaddr; else InvalidMultiaddr naming it (bounded)."""
    parts = text.split("/")
    if len(text) > MAX_LEN or len(parts) < 3 or parts[0] != "":
        raise InvalidMultiaddr(f"{what} {_shown(text)!r} is not a multiaddr", value=_shown(text))
    i = 1
    while i < len(parts):
        proto = parts[i]
        if proto in _BARE:
            i += 1
            continue
        if proto == "unix":  # the rest is the path
            return text
        known = proto in {"ip4", "ip6"} | _PORTS | _HOSTS | _PEERS | _VALUED
        if not known or i + 1 >= len(parts) or not _value_ok(proto, parts[i + 1]):
            bad = "/".join(parts[i : i + 2])
            raise InvalidMultiaddr(
                f"{what} {_shown(text)!r} is not a valid multiaddr (at {_shown('/' + bad)!r})",
                value=_shown(text),
            )
        i += 2
    return text
