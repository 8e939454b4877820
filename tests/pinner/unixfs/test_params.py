"""Import settings: validation of bad values, Kubo's implied raw leaves, profiles, params_for_cid."""

from __future__ import annotations

import pytest
from multiformats import CID

from pinner.unixfs import PROFILES, UnixfsParams, params_for_cid
from pinner.unixfs.params import MAX_CHUNK_SIZE


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": MAX_CHUNK_SIZE + 1}, "chunk_size"),
        ({"max_links": 1}, "max_links"),
        ({"cid_version": 2}, "cid_version"),
    ],
)
def test_bad_values_are_refused_by_name(kwargs: dict[str, int], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        UnixfsParams(**kwargs)


def test_largest_chunk_size_is_allowed() -> None:
    assert UnixfsParams(chunk_size=MAX_CHUNK_SIZE).chunk_size == 2 * 1024 * 1024 - 256


def test_cid_version_1_implies_raw_leaves_unless_told_otherwise() -> None:
    assert UnixfsParams(cid_version=1).raw_leaves is True
    assert UnixfsParams(cid_version=1, raw_leaves=False).raw_leaves is False
    assert UnixfsParams().raw_leaves is False


def test_params_for_cid() -> None:
    v0 = CID.decode("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")
    v1 = CID.decode("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")
    assert params_for_cid(v0) == UnixfsParams()
    assert params_for_cid(v1) == UnixfsParams(
        cid_version=1, raw_leaves=True, chunk_size=262144, max_links=174
    )
    assert params_for_cid(v1, "unixfs-v1-2025") == PROFILES["unixfs-v1-2025"]
    with pytest.raises(ValueError, match="unknown UnixFS profile"):
        params_for_cid(v1, "nope")
