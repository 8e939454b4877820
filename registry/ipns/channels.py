"""IPNS channels: when ``ns/model@curated`` (or ``@latest``) moves, sign a record for it and get it to IPFS nodes.

Each channel has its own Ed25519 key, generated here and stored sealed under the key-encryption key
(KEK) from settings, or from ``DATA_DIR/ipns.kek`` (created 0600 on first use). A pointer move signs a
record with sequence + 1 pointing at ``/ipfs/<pack CID>`` inside the caller's transaction and enqueues
an ``ipns-publish`` job; ``ipns-republish`` re-signs records close to their EOL with the same value.
A removed pointer (un-curated, or degraded with nothing to roll back to) signs a withdrawal record
instead, served and published like any other, so the last pack's record stops being the newest.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.cache import CacheConfig, TtlCache
from registry.db.base import utcnow
from registry.db.engine import readonly_session
from registry.db.models import IpnsKey, IpnsRecord, Model, Namespace, Pointer
from registry.db.naming import model_named, namespace_named
from registry.errors import ConfigError, NotFound
from registry.ipns.channel import (
    ChannelKey,
    IpnsRecordConfig,
    new_channel_key,
    open_channel_key,
    pointer_record,
    withdrawal_record,
)
from registry.ipns.name import parse_ipns_name
from registry.ipns.publish import SinkFactory, publish_newest
from registry.ipns.record import validate_record
from registry.jobs.kinds import JobKind
from registry.jobs.protocol import ClaimedJob, JobQueue
from registry.names import ModelRef
from registry.trust.errors import TrustError
from registry.trust.sealing import generate_kek, parse_kek

log = logging.getLogger(__name__)

KEK_FILE = "ipns.kek"
PUBLISH_JOB = JobKind.IPNS_PUBLISH
REPUBLISH_JOB = JobKind.IPNS_REPUBLISH


@dataclass(frozen=True)
class IpnsChannelConfig:
    """Which pointers get IPNS records, and their lifetimes (from ``settings.ipns``)."""

    records: IpnsRecordConfig = field(default_factory=IpnsRecordConfig)
    publish_latest: bool = False
    republish_interval_s: float = 600.0  # how often the daemon looks for records near their EOL
    served_cache_s: float = 1.0  # /ipns/{name} answers may be this stale (signed; TTL is far longer)
    served_cache_entries: int = 4096

    def __post_init__(self) -> None:
        if self.republish_interval_s <= 0 or self.served_cache_s < 0 or self.served_cache_entries < 1:
            raise ValueError(
                "ipns republish_interval_s must be positive, the served-record cache not negative"
            )

    @property
    def channel_tags(self) -> frozenset[str]:
        return frozenset({"curated", "latest"} if self.publish_latest else {"curated"})


def load_kek(configured: str | None, data_dir: Path) -> bytes:
    """The KEK from settings (base64), else ``data_dir/ipns.kek``, created with mode 0600 if missing.

    Raises:
        ConfigError: the configured value or the file is not a 32-byte base64 key, or the file is
            readable by others.
    """
    if configured:
        try:
            return parse_kek(configured)
        except TrustError as e:
            raise ConfigError(f"ipns.key_encryption_key: {e.message}") from None
    path = Path(data_dir) / KEK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    kek = generate_kek()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        st = path.stat()
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; the IPNS key-encryption key must be "
                f"readable only by its owner (chmod 600 {path})"
            ) from None
        try:
            return parse_kek(path.read_text("ascii"))
        except (TrustError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not a base64 32-byte key: {e}") from None
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(kek).decode("ascii") + "\n")
        f.flush()
        os.fsync(f.fileno())
    return kek


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    channel: str
    name: str
    sequence: int
    value: str
    validity: datetime
    ttl_s: int
    record: bytes
    published_at: datetime | None


@dataclass(frozen=True, slots=True)
class ServedRecord:
    name: str
    sequence: int
    record: bytes
    validity: datetime
    ttl_s: int


class IpnsChannels:
    """Signs, stores, serves and publishes the IPNS records of the registry's channels."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        kek: bytes,
        jobs: JobQueue | None,
        config: IpnsChannelConfig = IpnsChannelConfig(),
        *,
        sinks: SinkFactory,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._kek = kek
        self._jobs = jobs
        self.config = config
        self._sinks = sinks
        self._clock = clock
        self._served: TtlCache[str, ServedRecord] = TtlCache(
            CacheConfig(ttl_s=config.served_cache_s, max_entries=config.served_cache_entries)
        )
        self._served_q = (
            select(IpnsRecord.sequence, IpnsRecord.record, IpnsRecord.validity)
            .where(IpnsRecord.name == bindparam("name"))
            .order_by(IpnsRecord.sequence.desc())
            .limit(1)
        )

    # -- signing ---------------------------------------------------------------------------------

    async def on_pointer_moved(self, session: AsyncSession, model_id: int, tag: str, pack_cid: str) -> None:
        """The pointer service's hook, inside its transaction: sign and store the channel's next record."""
        if tag not in self.config.channel_tags:
            return
        await self.sign(session, model_id, tag, pack_cid)

    async def on_pointer_withdrawn(self, session: AsyncSession, model_id: int, tag: str) -> None:
        """The curation hook when it removes a pointer, inside its transaction: sign a withdrawal record."""
        if tag not in self.config.channel_tags:
            return
        key_row = (
            await session.execute(select(IpnsKey).where(IpnsKey.model_id == model_id, IpnsKey.tag == tag))
        ).scalar_one_or_none()
        if key_row is not None:  # no key: the channel never had a record, so none to supersede
            await self._sign_next(session, key_row, await self._channel_name(session, model_id, tag), None)

    async def sign(self, session: AsyncSession, model_id: int, tag: str, pack_cid: str) -> ChannelRecord:
        """Get or create the channel key, sign ``/ipfs/<pack_cid>`` with sequence + 1, store, enqueue publish."""
        channel = await self._channel_name(session, model_id, tag)
        key_row = (
            await session.execute(select(IpnsKey).where(IpnsKey.model_id == model_id, IpnsKey.tag == tag))
        ).scalar_one_or_none()
        if key_row is None:
            fresh = new_channel_key(channel, self._kek)
            key_row = IpnsKey(name=fresh.name, model_id=model_id, tag=tag, sealed_private_key=fresh.sealed)
            session.add(key_row)
            await session.flush()
        return await self._sign_next(session, key_row, channel, pack_cid)

    async def _sign_next(
        self, session: AsyncSession, key_row: IpnsKey, channel: str, pack_cid: str | None
    ) -> ChannelRecord:
        """Sign ``/ipfs/<pack_cid>`` (None: the withdrawal) with sequence + 1, store it, enqueue publish."""
        key = open_channel_key(
            ChannelKey(channel, key_row.name, bytes(key_row.sealed_private_key)), self._kek
        )
        previous = (
            await session.execute(
                select(func.max(IpnsRecord.sequence)).where(IpnsRecord.name == key_row.name)
            )
        ).scalar()
        now = self._clock()
        if pack_cid is None:
            raw = withdrawal_record(key, previous, now, self.config.records)
        else:
            raw = pointer_record(key, pack_cid, previous, now, self.config.records)
        rec = validate_record(key_row.name, raw, now)  # our own output goes through the same validator
        row = IpnsRecord(
            name=key_row.name,
            sequence=rec.sequence,
            value=rec.path,
            record=raw,
            validity=rec.expires_at,
            created_at=now,
        )
        session.add(row)
        await session.flush()
        self._served.invalidate(key_row.name)
        if self._jobs is not None:
            await self._jobs.enqueue(
                PUBLISH_JOB,
                {"name": key_row.name},
                dedupe_key=f"{PUBLISH_JOB}:{key_row.name}",
                session=session,
            )
        return ChannelRecord(
            channel, row.name, row.sequence, row.value, row.validity, self.config.records.ttl_s, raw, None
        )

    async def _channel_name(self, session: AsyncSession, model_id: int, tag: str) -> str:
        ns, model = (
            await session.execute(
                select(Namespace.name, Model.name)
                .join(Model, Model.namespace_id == Namespace.id)
                .where(Model.id == model_id)
            )
        ).one()
        return f"{ns}/{model}@{tag}"

    async def republish_due(self) -> list[str]:
        """Re-sign (sequence + 1, same value; a withdrawal when the pointer is gone) every channel near EOL."""
        now = self._clock()
        horizon = now + timedelta(seconds=self.config.records.republish_before_s)
        newest = (
            select(IpnsRecord.name, func.max(IpnsRecord.sequence).label("seq"))
            .group_by(IpnsRecord.name)
            .subquery()
        )
        async with readonly_session(self._sessions) as s:
            due = list(
                (
                    await s.execute(
                        select(IpnsRecord.name, IpnsRecord.sequence)
                        .join(
                            newest, (newest.c.name == IpnsRecord.name) & (newest.c.seq == IpnsRecord.sequence)
                        )
                        .where(IpnsRecord.validity <= horizon)
                        .order_by(IpnsRecord.validity)
                    )
                ).all()
            )
        done = []
        for name, seq in due:
            async with self._sessions() as s, s.begin():
                key_row = await s.get(IpnsKey, name)
                current = (
                    await s.execute(select(func.max(IpnsRecord.sequence)).where(IpnsRecord.name == name))
                ).scalar()
                if key_row is None or current != seq:
                    continue  # moved meanwhile: the move signed a fresh record
                target = (
                    await s.execute(
                        select(Pointer.pack_cid).where(
                            Pointer.model_id == key_row.model_id, Pointer.tag == key_row.tag
                        )
                    )
                ).scalar_one_or_none()
                # No pointer: the channel was withdrawn. Never extend a record for a pack the registry
                # no longer stands behind: (re-)sign the withdrawal, so it stays the newest record.
                channel = await self._channel_name(s, key_row.model_id, key_row.tag)
                await self._sign_next(s, key_row, channel, target)
                done.append(name)
        if done:
            log.info("re-signed %d IPNS record(s) before their EOL", len(done))
        return done

    # -- reading ---------------------------------------------------------------------------------

    async def served(self, name: str) -> ServedRecord:
        """The newest record bytes of a name, in one indexed query: the ``/ipns/{name}`` hot path.

        Raises:
            InvalidIpnsName, NotFound.
        """
        canonical = parse_ipns_name(name).canonical
        hit = self._served.get(canonical)
        if hit is not None:
            return hit
        async with readonly_session(self._sessions) as s:
            row = (await s.execute(self._served_q, {"name": canonical})).first()
        if row is None:
            raise NotFound(f"this registry has no IPNS record for {name}", name=name)
        out = ServedRecord(canonical, row[0], bytes(row[1]), row[2], self.config.records.ttl_s)
        self._served.put(canonical, out)  # no-op when served_cache_s is 0
        return out

    async def latest(self, name: str) -> ChannelRecord:
        """The newest record of an IPNS name this registry holds the key of.

        Raises:
            InvalidIpnsName, NotFound.
        """
        canonical = parse_ipns_name(name).canonical
        async with readonly_session(self._sessions) as s:
            row = (
                await s.execute(
                    select(IpnsRecord, IpnsKey)
                    .join(IpnsKey, IpnsKey.name == IpnsRecord.name)
                    .where(IpnsRecord.name == canonical)
                    .order_by(IpnsRecord.sequence.desc())
                    .limit(1)
                )
            ).first()
            if row is None:
                raise NotFound(f"this registry has no IPNS record for {name}", name=name)
            rec, key = row
            return await self._view(s, rec, key)

    async def for_channel(self, ref: ModelRef, tag: str) -> ChannelRecord:
        """The newest record of ``ns/model@tag``. Raises NotFound."""
        async with readonly_session(self._sessions) as s:
            key = (
                await s.execute(
                    select(IpnsKey)
                    .join(Model, Model.id == IpnsKey.model_id)
                    .join(Namespace, Namespace.id == Model.namespace_id)
                    .where(namespace_named(ref.namespace), model_named(ref.model), IpnsKey.tag == tag)
                )
            ).scalar_one_or_none()
            rec = None
            if key is not None:
                rec = (
                    (
                        await s.execute(
                            select(IpnsRecord)
                            .where(IpnsRecord.name == key.name)
                            .order_by(IpnsRecord.sequence.desc())
                        )
                    )
                    .scalars()
                    .first()
                )
            if key is None or rec is None:
                raise NotFound(f"channel {ref}@{tag} has no IPNS record (yet)", channel=f"{ref}@{tag}")
            return await self._view(s, rec, key)

    async def _view(self, s: AsyncSession, rec: IpnsRecord, key: IpnsKey) -> ChannelRecord:
        channel = await self._channel_name(s, key.model_id, key.tag)
        return ChannelRecord(
            channel,
            rec.name,
            rec.sequence,
            rec.value,
            rec.validity,
            self.config.records.ttl_s,
            bytes(rec.record),
            rec.published_at,
        )

    # -- publishing to nodes ---------------------------------------------------------------------

    async def publish(self, name: str) -> list[str]:
        """Put the newest record of ``name`` to every configured IPFS node that takes records.

        Returns the URLs it reached. Raises RetryJob when some node failed (putting again is harmless).
        """
        return await publish_newest(self._sessions, self._sinks, name, self._clock)

    # -- job handlers ----------------------------------------------------------------------------

    async def handle_publish(self, job: ClaimedJob) -> None:
        await self.publish(str(job.payload.get("name", "")))

    async def handle_republish(self, job: ClaimedJob) -> None:
        await self.republish_due()
