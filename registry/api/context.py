"""Registry services the HTTP routes and the CLI call: auth, blobs, publish, browse, pointers. No HTTP in here."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from model_core.format.pack import ManifestLimits
from registry.accounts.auth import AuthService
from registry.cache import CacheConfig, Memo, Rendered, TtlCache
from registry.events.service import EventService
from registry.packs.blobs import BlobService
from registry.packs.browse import BrowseService
from registry.packs.pointers import PointerService
from registry.packs.publish import PublishService


@dataclass(frozen=True, slots=True)
class RegistryServices:
    """What the API routes need, built once by the composition root."""

    auth: AuthService
    blobs: BlobService
    publish: PublishService
    browse: BrowseService
    pointers: PointerService
    limits: ManifestLimits
    events: EventService
    read_requires_token: bool = False
    metrics_requires_token: bool = False  # /metrics (resolved from settings by the composition root)
    page_size_default: int = 50
    page_size_max: int = 500
    publish_body_slack_bytes: int = 64 * 1024  # detached signatures, tag and reason around the manifest
    # rendered pack-detail bodies by CID, for the read-cache TTL (the pack GET hot path)
    pack_json: TtlCache[str, bytes] = field(default_factory=lambda: TtlCache(CacheConfig(ttl_s=0)))
    # the pack detail's manifest, shards and files rendered, by CID: they never change under it
    pack_content_json: Memo[str, bytes] = field(default_factory=lambda: Memo(4096, 64 * 1024 * 1024, len))
    # rendered pack details and model pages, reused while the reads return the same (unchanged) result
    rendered: Rendered[Hashable] = field(default_factory=Rendered)
