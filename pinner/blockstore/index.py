"""The on-disk record of one stored file: its root, digests, leaf slices and interior dag-pb nodes.

One JSON document per file root, written beside the data file and renamed into place only after
both are synced, so an index that exists always describes complete, durable bytes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from pinner.unixfs.params import UnixfsParams
from pinner.unixfs.pipeline import LeafRecord

INDEX_FORMAT = 1


@dataclass(frozen=True, slots=True)
class FileIndex:
    """Everything needed to serve a file's blocks from the file itself."""

    root: bytes
    root_tsize: int
    sha256: bytes
    size: int
    params: UnixfsParams
    leaves: tuple[LeafRecord, ...]
    nodes: tuple[tuple[bytes, bytes], ...]

    @property
    def data_name(self) -> str:
        """Data files are named by the file's sha256, so identical files share one."""
        return self.sha256.hex()

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "format": INDEX_FORMAT,
            "root": self.root.hex(),
            "root_tsize": self.root_tsize,
            "sha256": self.sha256.hex(),
            "size": self.size,
            "params": {
                "chunk_size": self.params.chunk_size,
                "max_links": self.params.max_links,
                "cid_version": self.params.cid_version,
                "raw_leaves": self.params.leaves_raw,
            },
            "leaves": [[leaf.cid_bytes.hex(), leaf.offset, leaf.length] for leaf in self.leaves],
            "nodes": [[cid.hex(), base64.b64encode(block).decode()] for cid, block in self.nodes],
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> FileIndex:
        """Parses an index document; raises ValueError (or KeyError/TypeError) when it is malformed."""
        doc = json.loads(raw)
        if doc.get("format") != INDEX_FORMAT:
            raise ValueError(f"unknown index format {doc.get('format')!r}")
        p = doc["params"]
        return cls(
            root=bytes.fromhex(doc["root"]),
            root_tsize=int(doc["root_tsize"]),
            sha256=bytes.fromhex(doc["sha256"]),
            size=int(doc["size"]),
            params=UnixfsParams(
                chunk_size=int(p["chunk_size"]),
                max_links=int(p["max_links"]),
                cid_version=int(p["cid_version"]),
                raw_leaves=bool(p["raw_leaves"]),
            ),
            leaves=tuple(LeafRecord(bytes.fromhex(c), int(o), int(n)) for c, o, n in doc["leaves"]),
            nodes=tuple((bytes.fromhex(c), base64.b64decode(b)) for c, b in doc["nodes"]),
        )
