"""The block store seam: what the gateway, the CAR exporter and the replication service need.

Implementations: ``FsBlockstore`` (embedded filestore, this package); IPFS-node-backed stores elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from multiformats import CID


class Blockstore(Protocol):
    """Verified blocks by CID. Every returned block has been re-hashed against its CID."""

    def has(self, cid: CID | bytes) -> bool: ...

    def get_block(self, cid: CID | bytes) -> bytes: ...

    def put_block(self, cid: CID | bytes, data: bytes) -> None: ...

    def block_size(self, cid: CID | bytes) -> int: ...

    def iter_dag_blocks(self, root: CID | bytes) -> Iterator[tuple[CID, bytes]]: ...

    def iter_file_bytes(
        self, root: CID | bytes, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]: ...

    def file_size(self, root: CID | bytes) -> int: ...
