"""Directory nodes: sorting by name bytes, refusing names and sizes Kubo would treat differently."""

from __future__ import annotations

import pytest
from multiformats import CID

from pinner.content_errors import DirectoryTooLarge
from pinner.dagpb import decode_node
from pinner.unixfs import build_directory
from pinner.unixfs.format import DIRECTORY, decode_data

FILE_CID = CID.decode("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o")


def test_links_sorted_by_utf8_bytes_with_tsize() -> None:
    _cid, block = build_directory(
        [("b", FILE_CID, 20), ("B", FILE_CID, 20), ("ä", FILE_CID, 20), ("a", FILE_CID, 20)]
    )
    node = decode_node(block)
    assert [link.name for link in node.links] == ["B", "a", "b", "ä"]
    assert all(link.tsize == 20 for link in node.links)
    assert decode_data(node.data or b"").type == DIRECTORY


def test_empty_directory_has_the_well_known_cid() -> None:
    assert str(build_directory([])[0]) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_bad_names_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid directory entry name"):
        build_directory([(name, FILE_CID, 1)])


def test_duplicate_names_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        build_directory([("a", FILE_CID, 1), ("a", FILE_CID, 1)])


def test_over_max_entries_refused_clearly() -> None:
    with pytest.raises(DirectoryTooLarge, match="HAMT"):
        build_directory([(f"f{i}", FILE_CID, 1) for i in range(11)], max_entries=10)


def test_over_kubo_sharding_threshold_refused() -> None:
    entries = [(f"{i:0200d}", FILE_CID, 1) for i in range(1200)]  # ~ 1200 * 234 bytes > 256 KiB
    with pytest.raises(DirectoryTooLarge, match="HAMT threshold"):
        build_directory(entries)
