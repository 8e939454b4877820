"""Where a pack's bytes come from when they are pushed: the embedded blockstore, plus the manifest block
(kept in the index, not the store).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from multiformats import CID

from pinner.blockstore import FsBlockstore
from pinner.content_errors import BlockNotFound


def _read_chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


class PackSource:
    """The embedded blockstore plus a pack's manifest block (kept in the index, not the store)."""

    def __init__(self, store: FsBlockstore, extra: dict[str, bytes]) -> None:
        self._store = store
        self._extra = extra

    def has(self, cid: str) -> bool:
        return cid in self._extra or self._store.has(cid)

    def iter_dag_blocks(self, root: str) -> Iterator[tuple[CID | bytes, bytes]]:
        if root in self._extra:
            return iter([(CID.decode(root), self._extra[root])])
        return self._store.iter_dag_blocks(root)

    def get_block(self, cid: str) -> bytes:
        if cid in self._extra:
            return self._extra[cid]
        return self._store.get_block(cid)

    def iter_file_bytes(self, root: str) -> Iterator[bytes]:
        """The stored file as is, unverified: only `add` reads this, and the node's answer (the CID it
        built) is the check; a corrupt file yields another CID and the verified CAR is sent instead."""
        if root in self._extra:
            return iter([self._extra[root]])
        try:
            path = self._store.file_path(root)
        except BlockNotFound:
            return self._store.iter_file_bytes(root)
        return _read_chunks(path)

    def file_size(self, root: str) -> int:
        if root in self._extra:
            return len(self._extra[root])
        return self._store.file_size(root)
