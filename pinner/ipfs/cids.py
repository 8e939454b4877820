"""CID text normalisation and block verification: nodes print CIDs differently and must never be trusted."""

from __future__ import annotations

import hmac

from multiformats import CID

from pinner.ipfs.errors import BlockMismatchError, InvalidCidError


def parse_cid(text: str) -> CID:
    """Decode a CID from any multibase text, raising `InvalidCidError` with the offending text."""
    try:
        return CID.decode(text.strip())
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCidError(f"{text!r} is not a valid CID: {exc}", cid=text) from exc


def normalize_cid(text: str) -> str:
    """The canonical text of a CID: CIDv0 stays base58btc (`Qm...`), CIDv1 is printed in base32.

    js-ipfs prints CIDv1 in base58btc (`zb2...`) where Kubo prints base32 (`bafy...`); comparing CIDs
    from several nodes only works on one spelling.
    """
    cid = parse_cid(text)
    if cid.version == 0:
        return str(cid)
    return str(cid.set(base="base32"))


def verify_block(cid_text: str, data: bytes, *, node_url: str = "") -> None:
    """Re-hash `data` with the CID's hash function; raise `BlockMismatchError` when it differs.

    Identity-hashed CIDs carry their bytes inline and are compared directly.
    """
    cid = parse_cid(cid_text)
    try:
        actual = cid.hashfun.digest(data, size=len(cid.raw_digest))
    except (ValueError, KeyError, TypeError) as exc:  # hash function without an implementation here
        raise BlockMismatchError(
            f"cannot verify block {cid_text}: hash function {cid.hashfun.name} is not available",
            node_url=node_url,
            cid=cid_text,
        ) from exc
    if not hmac.compare_digest(bytes(actual), bytes(cid.digest)):
        raise BlockMismatchError(
            f"node {node_url} returned {len(data)} bytes for {cid_text} that hash to a different digest",
            node_url=node_url,
            cid=cid_text,
        )
