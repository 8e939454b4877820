"""Channel keys sealed at rest and the records a pointer move signs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry.ipns.channel import (
    ChannelKey,
    IpnsRecordConfig,
    needs_republish,
    new_channel_key,
    open_channel_key,
    pointer_record,
)
from registry.ipns.record import check_sequence, validate_record
from registry.trust.errors import IpnsSequenceNotNewer, KeySealError
from registry.trust.sealing import generate_kek

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
CID_A = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
CID_B = "bafkqaddwgevxmmraojswg33smq"


def test_pointer_moves_sign_increasing_sequences() -> None:
    kek = generate_kek()
    stored = new_channel_key("acme/tiny@curated", kek)
    assert stored.name.startswith("k51")
    key = open_channel_key(stored, kek)
    first = validate_record(stored.name, pointer_record(key, CID_A, None, NOW), NOW)
    second = validate_record(stored.name, pointer_record(key, CID_B, first.sequence, NOW), NOW)
    assert (first.sequence, first.path) == (0, f"/ipfs/{CID_A}")
    assert (second.sequence, second.path) == (1, f"/ipfs/{CID_B}")
    assert second.expires_at == NOW + timedelta(hours=48) and second.ttl_ns == 3600 * 10**9
    check_sequence(second, first)
    with pytest.raises(IpnsSequenceNotNewer):
        check_sequence(first, second)


def test_sealed_key_is_bound_to_its_channel_and_kek() -> None:
    kek = generate_kek()
    stored = new_channel_key("acme/tiny@curated", kek)
    moved = ChannelKey("acme/tiny@latest", stored.name, stored.sealed)
    with pytest.raises(KeySealError):
        open_channel_key(moved, kek)
    with pytest.raises(KeySealError):
        open_channel_key(stored, generate_kek())
    other = new_channel_key("acme/tiny@curated", kek)
    with pytest.raises(KeySealError, match="not the key of"):
        open_channel_key(ChannelKey(stored.channel, other.name, stored.sealed), kek)


def test_republish_window() -> None:
    config = IpnsRecordConfig(validity_s=3600, ttl_s=60, republish_before_s=600)
    stored = new_channel_key("a/b@curated", kek := generate_kek())
    record = validate_record(
        stored.name, pointer_record(open_channel_key(stored, kek), CID_A, 4, NOW, config), NOW
    )
    assert not needs_republish(record, NOW, config)
    assert not needs_republish(record, NOW + timedelta(seconds=2999), config)
    assert needs_republish(record, NOW + timedelta(seconds=3000), config)


@pytest.mark.parametrize(
    "kwargs", [{"validity_s": 10}, {"ttl_s": 0}, {"validity_s": 3600, "republish_before_s": 3600}]
)
def test_bad_record_config(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        IpnsRecordConfig(**kwargs)
