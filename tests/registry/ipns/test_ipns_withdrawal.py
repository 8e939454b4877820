"""A withdrawn channel (its pointer removed) gets a signed withdrawal record: sequence + 1, served and
published like any other, so the last pack's record is no longer the newest."""

from __future__ import annotations

from datetime import timedelta

import dag_cbor
import pytest
from multiformats import CID, multihash
from sqlalchemy import delete, select

from registry.db.jobs import Job
from registry.ipns.name import ipns_name
from registry.ipns.protobuf import field_bytes
from registry.ipns.record import (
    F_DATA,
    F_SIG_V2,
    V2_PREFIX,
    WITHDRAWN_MARKER,
    WITHDRAWN_PATH,
    check_sequence,
    format_validity,
    make_record,
    validate_record,
)
from registry.jobs.sql import SqlJobQueue
from registry.trust.errors import IpnsMalformed, IpnsSequenceNotNewer
from registry.trust.keys import generate_private_key, public_key_of
from tests.factories import PackFactory
from tests.registry.ipns.test_ipns_channels import Clock, _channels, _model_with_packs


def test_the_withdrawal_path_is_the_identity_cid_of_the_marker() -> None:
    cid = CID("base32", 1, "raw", multihash.wrap(WITHDRAWN_MARKER, "identity"))
    assert f"/ipfs/{cid}" == WITHDRAWN_PATH


def test_a_withdrawn_field_with_another_value_is_malformed() -> None:
    key = generate_private_key()
    name = ipns_name(public_key_of(key))
    now = Clock().now
    data = dag_cbor.encode(
        {
            "Value": b"/ipfs/bafkqaaa",
            "Validity": format_validity(now + timedelta(hours=1)),
            "ValidityType": 0,
            "Sequence": 3,
            "TTL": 10**9,
            "Withdrawn": True,
        }
    )
    raw = field_bytes(F_SIG_V2, key.sign(V2_PREFIX + data)) + field_bytes(F_DATA, data)
    with pytest.raises(IpnsMalformed, match="Withdrawn"):
        validate_record(name, raw, now)
    with pytest.raises(ValueError):
        make_record(key, "/ipfs/bafkqaaa", 0, now + timedelta(hours=1), 0, withdrawn=True)
    ok = make_record(key, WITHDRAWN_PATH, 0, now + timedelta(hours=1), 0, withdrawn=True)
    assert validate_record(name, ok, now).withdrawn


async def test_withdrawal_supersedes_the_last_record_and_is_published(
    sessions, pack_factory: PackFactory
) -> None:
    mid, (a,) = await _model_with_packs(pack_factory, 1)
    clock = Clock()
    queue = SqlJobQueue(sessions)
    channels = _channels(sessions, clock, jobs=queue)
    async with sessions() as s, s.begin():
        first = await channels.sign(s, mid, "curated", a)
    assert (await channels.served(first.name)).record == first.record
    async with sessions() as s:
        await s.execute(delete(Job))
        await s.commit()
    clock.now += timedelta(seconds=5)
    async with sessions() as s, s.begin():
        await channels.on_pointer_withdrawn(s, mid, "curated")
        await channels.on_pointer_withdrawn(s, mid, "latest")  # not a channel tag here: nothing
    served = await channels.served(first.name)
    assert served.sequence == first.sequence + 1 and served.record != first.record
    rec = validate_record(first.name, served.record, clock.now)
    assert rec.withdrawn and rec.path == WITHDRAWN_PATH
    assert rec.expires_at == clock.now + timedelta(seconds=3600)
    with pytest.raises(IpnsSequenceNotNewer):  # the old pack's record is a replay now
        check_sequence(validate_record(first.name, first.record, clock.now), rec)
    async with sessions() as s:
        jobs = (await s.execute(select(Job))).scalars().all()
    assert [(j.kind, j.payload) for j in jobs] == [("ipns-publish", {"name": first.name})]


async def test_a_channel_that_never_had_a_record_signs_nothing(sessions, pack_factory: PackFactory) -> None:
    mid, _ = await _model_with_packs(pack_factory, 1)
    channels = _channels(sessions, Clock())
    async with sessions() as s, s.begin():
        await channels.on_pointer_withdrawn(s, mid, "curated")
    async with sessions() as s:
        assert (await s.execute(select(Job))).first() is None
