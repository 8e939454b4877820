"""The startup guard for the key-encryption key: a missing KEK file is never silently replaced while the
database holds rows sealed with the old one (IPNS channel keys, node credentials, webhook secrets)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.db.engine import readonly_session
from registry.db.models import IpfsNode, IpnsKey
from registry.db.webhooks import WebhookEndpoint
from registry.errors import ConfigError
from registry.ipns.channels import KEK_FILE


async def sealed_row_count(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int, int]:
    """(IPNS keys, nodes with credentials, webhook endpoints): the rows only the KEK opens."""
    async with readonly_session(sessions) as s:
        keys = (await s.execute(select(func.count()).select_from(IpnsKey))).scalar_one()
        creds = (
            await s.execute(select(func.count()).select_from(IpfsNode).where(IpfsNode.auth.is_not(None)))
        ).scalar_one()
        hooks = (await s.execute(select(func.count()).select_from(WebhookEndpoint))).scalar_one()
    return int(keys), int(creds), int(hooks)


async def require_kek_for_sealed_rows(
    sessions: async_sessionmaker[AsyncSession], configured: str | None, data_dir: Path
) -> None:
    """ConfigError when no KEK is configured, its file is missing and sealed rows exist (a new key would
    make them unreadable; the daemon refuses to start instead)."""
    path = Path(data_dir) / KEK_FILE
    if configured or path.exists():
        return
    keys, creds, hooks = await sealed_row_count(sessions)
    if keys or creds or hooks:
        raise ConfigError(
            f"the key-encryption key file {path} is missing, but the database holds {keys} IPNS key(s), "
            f"{creds} node credential(s) and {hooks} webhook secret(s) sealed with it; restore the file (or "
            "set ipns.key_encryption_key) - refusing to start with a new key"
        )
