"""Getting a channel's newest IPNS record to the IPFS nodes that take records (``ipns-publish``).

The record sinks come from the composition root (the one node-client factory: Kubo nodes, with their
credentials); putting the same record again is harmless, so a failed node only makes the job retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from multiformats import multibase
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pinner.states import NodeState
from registry.db.engine import readonly_session
from registry.db.models import IpfsNode, IpnsRecord
from registry.ipns.name import parse_ipns_name
from registry.jobs.protocol import RetryJob

log = logging.getLogger("registry.ipns.channels")


class RecordSink(Protocol):
    """An IPFS node that takes IPNS records (Kubo ``routing/put``, js-ipfs ``dht/put``)."""

    async def put_ipns_record(self, name: str, record: bytes) -> None: ...


# A registered node -> its record sink, or None when it does not take IPNS records from us.
SinkFactory = Callable[[IpfsNode], RecordSink | None]


def peer_id_of(name: str) -> str:
    """The base58 peer-id form of an IPNS name: the only form js-ipfs resolves, and Kubo reads it too."""
    parsed = parse_ipns_name(name)
    mh = bytes([parsed.hash_code, len(parsed.digest)]) + parsed.digest
    return str(multibase.get("base58btc").encode(mh))[1:]


async def publish_newest(
    sessions: async_sessionmaker[AsyncSession], sinks: SinkFactory, name: str, clock: Callable[[], datetime]
) -> list[str]:
    """Put the newest record of ``name`` to every node that is not down and takes records.

    Returns the URLs it reached (and stamps the record published). Raises RetryJob when some node failed.
    """
    async with readonly_session(sessions) as s:
        rec = (
            (
                await s.execute(
                    select(IpnsRecord).where(IpnsRecord.name == name).order_by(IpnsRecord.sequence.desc())
                )
            )
            .scalars()
            .first()
        )
        nodes = list((await s.execute(select(IpfsNode).where(IpfsNode.state != NodeState.DOWN))).scalars())
    if rec is None:
        log.warning("ipns-publish: no record for %s; nothing to publish", name)
        return []
    usable = [(n, sink) for n in nodes if (sink := sinks(n)) is not None]
    if not usable:
        log.info(
            "ipns-publish: no IPFS node takes IPNS records (%d configured); %s seq %d is served only at /ipns/%s",
            len(nodes),
            name,
            rec.sequence,
            name,
        )
        return []
    reached, failed = [], []
    key = peer_id_of(name)
    for node, sink in usable:
        try:
            await sink.put_ipns_record(key, bytes(rec.record))
            reached.append(node.url)
        except Exception as e:  # every node error type: report and retry the job later
            failed.append(f"{node.name}: {e}")
    if reached:
        async with sessions() as s, s.begin():
            row = await s.get(IpnsRecord, rec.id)
            if row is not None:
                row.published_at = clock()
    if failed:
        raise RetryJob(f"IPNS record {name} seq {rec.sequence} not put to: {'; '.join(failed)}")
    return reached
