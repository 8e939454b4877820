"""CID spelling from nodes and block verification, the two things every node answer goes through."""

from __future__ import annotations

import pytest
from multiformats import CID, multihash

from pinner.cids import normalize_cid
from pinner.content_errors import InvalidCid
from pinner.ipfs.errors import BlockMismatchError
from pinner.ipfs.http import verify_node_block

DATA = b"hello\n"
V1 = str(CID("base32", 1, "raw", multihash.digest(DATA, "sha2-256")))
V0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"


def test_js_ipfs_base58_cidv1_is_printed_in_base32() -> None:
    b58 = str(CID.decode(V1).set(base="base58btc"))
    assert b58.startswith("z") and normalize_cid(b58) == V1 == normalize_cid(V1)


def test_cidv0_keeps_its_spelling() -> None:
    assert normalize_cid(V0) == V0


def test_garbage_is_an_invalid_cid_naming_the_text() -> None:
    with pytest.raises(InvalidCid) as err:
        normalize_cid("Qm-not-a-cid")
    assert err.value.cid == "Qm-not-a-cid" and err.value.http_status == 400


def test_verify_accepts_the_right_bytes_and_names_the_node_on_wrong_ones() -> None:
    verify_node_block(V1, DATA)
    with pytest.raises(BlockMismatchError) as err:
        verify_node_block(V1, DATA + b"!", node_url="http://127.0.0.1:5001")
    assert (err.value.cid, err.value.node_url) == (V1, "http://127.0.0.1:5001")


def test_verify_uses_the_cids_hash_function() -> None:
    cid = str(CID("base32", 1, "raw", multihash.digest(DATA, "sha2-512")))
    verify_node_block(cid, DATA)
    with pytest.raises(BlockMismatchError):
        verify_node_block(cid, b"other")


@pytest.mark.parametrize("size", [1, 4, 31])
def test_truncated_digests_are_refused(size: int) -> None:
    import hashlib

    from pinner.cids import rehash_matches, verify_block
    from pinner.content_errors import InvalidBlock

    cid = CID("base32", 1, "raw", bytes((0x12, size)) + hashlib.sha256(DATA).digest()[:size])
    assert not rehash_matches(cid, DATA)
    with pytest.raises(BlockMismatchError):
        verify_node_block(str(cid), DATA)
    with pytest.raises(InvalidBlock):  # the blockstore's check
        verify_block(cid, DATA)


def test_the_canonical_spellings_take_the_fast_path_with_the_same_answers() -> None:
    """normalize_cid skips decoding for the spellings Kubo prints; every answer equals multiformats' own."""
    import random

    rnd = random.Random(7)
    for _ in range(200):
        digest = multihash.digest(rnd.randbytes(rnd.randrange(1, 64)), "sha2-256")
        for cid in (CID("base58btc", 0, "dag-pb", digest), CID("base32", 1, "raw", digest)):
            for spelling in (str(cid), str(cid.set(base="base58btc")) if cid.version else str(cid)):
                decoded = CID.decode(spelling)
                want = str(decoded) if decoded.version == 0 else str(decoded.set(base="base32"))
                assert normalize_cid(spelling) == want
    for bad in (V1[:-1] + ("a" if V1[-1] != "a" else "b"), V1.upper(), V0[:-1] + "0", "bafy" + "a" * 55):
        try:
            decoded = CID.decode(bad)
        except Exception:
            with pytest.raises(InvalidCid):
                normalize_cid(bad)
        else:  # a valid CID in another spelling (base32 upper): printed the canonical way
            assert normalize_cid(bad) == str(decoded.set(base="base32"))
