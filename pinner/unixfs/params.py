"""How a file is cut into a UnixFS DAG: chunk size, fan-out, CID version, leaf kind, and named profiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # multiformats costs ~50 ms to import: only where a CID object is built
    from multiformats import CID

MIN_CHUNK_SIZE = 1
MAX_CHUNK_SIZE = 2 * 1024 * 1024 - 256  # Kubo's limit: a block plus its envelope stays under 2 MiB
DEFAULT_CHUNK_SIZE = 262144
DEFAULT_MAX_LINKS = 174


@dataclass(frozen=True, slots=True)
class UnixfsParams:
    """Kubo ``ipfs add`` import settings.

    ``raw_leaves`` left as ``None`` follows Kubo: CIDv1 implies raw leaves, CIDv0 does not.
    After construction it is always a bool.
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_links: int = DEFAULT_MAX_LINKS
    cid_version: int = 0
    raw_leaves: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_size, int) or not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(
                f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes, "
                f"got {self.chunk_size}"
            )
        if not isinstance(self.max_links, int) or self.max_links < 2:
            raise ValueError(f"max_links must be at least 2, got {self.max_links}")
        if self.cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, got {self.cid_version}")
        if self.raw_leaves is None:
            object.__setattr__(self, "raw_leaves", self.cid_version == 1)

    @property
    def leaves_raw(self) -> bool:
        """Whether leaves are raw blocks (typed accessor for ``raw_leaves``)."""
        return bool(self.raw_leaves)


PROFILES: dict[str, UnixfsParams] = {
    "unixfs-v0-2015": UnixfsParams(chunk_size=262144, max_links=174, cid_version=0, raw_leaves=False),
    "unixfs-v1-2025": UnixfsParams(chunk_size=1048576, max_links=1024, cid_version=1, raw_leaves=True),
}


def params_for_cid(cid: CID, profile: str | None = None) -> UnixfsParams:
    """The settings to rebuild ``cid``: a named profile, else Kubo's defaults for the CID's version."""
    if profile is not None:
        try:
            return PROFILES[profile]
        except KeyError:
            raise ValueError(f"unknown UnixFS profile {profile!r}; known: {', '.join(PROFILES)}") from None
    if cid.version == 0:
        return PROFILES["unixfs-v0-2015"]
    return UnixfsParams(cid_version=1, raw_leaves=True)
