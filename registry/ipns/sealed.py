"""The startup guard for the key-encryption key: a missing KEK file is never silently replaced while the
database holds rows sealed with the old one (IPNS channel keys, node credentials)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.engine import readonly_session
from registry.db.models import IpfsNode, IpnsKey
from registry.errors import ConfigError
from registry.ipns.channels import KEK_FILE


async def sealed_row_count(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """(IPNS keys, nodes with credentials): the rows only the KEK opens."""
    async with readonly_session(sessions) as s:
        keys = (await s.execute(select(func.count()).select_from(IpnsKey))).scalar_one()
        creds = (
            await s.execute(select(func.count()).select_from(IpfsNode).where(IpfsNode.auth.is_not(None)))
        ).scalar_one()
    return int(keys), int(creds)


async def require_kek_for_sealed_rows(
    sessions: async_sessionmaker[AsyncSession], configured: str | None, data_dir: Path
) -> None:
    """ConfigError when no KEK is configured, its file is missing and sealed rows exist (a new key would
    make them unreadable; the daemon refuses to start instead)."""
    path = Path(data_dir) / KEK_FILE
    if configured or path.exists():
        return
    keys, creds = await sealed_row_count(sessions)
    if keys or creds:
        raise ConfigError(
            f"the key-encryption key file {path} is missing, but the database holds {keys} IPNS key(s) "
            f"and {creds} node credential(s) sealed with it; restore the file (or set "
            "ipns.key_encryption_key) - refusing to start with a new key"
        )
