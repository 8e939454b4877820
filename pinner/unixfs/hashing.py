"""Only-hash entry points (``ipfs add --only-hash``): the CID and sha256 of a file, nothing stored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pinner.cids import cid_str
from pinner.unixfs.params import UnixfsParams
from pinner.unixfs.pipeline import ChunkPipeline, PipelineConfig

if TYPE_CHECKING:  # multiformats costs ~50 ms to import: only where a CID object is built
    from multiformats import CID


@dataclass(frozen=True, slots=True)
class FileDigest:
    """A file's identity: its UnixFS root CID, whole-file sha256 and size in bytes."""

    cid: CID
    sha256: bytes
    size: int

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()


def _run(
    source: Path | BinaryIO, params: UnixfsParams, file_sha256: bool, config: PipelineConfig | None
) -> ChunkPipeline:
    pipeline = ChunkPipeline(params, file_sha256=file_sha256, config=config)
    try:
        if isinstance(source, Path):
            with source.open("rb", buffering=0) as f:
                pipeline.read_from(f)
        else:
            pipeline.read_from(source)
    except BaseException:
        pipeline.close()
        raise
    return pipeline


def hash_file(
    source: Path | BinaryIO, params: UnixfsParams | None = None, *, config: PipelineConfig | None = None
) -> FileDigest:
    """CID (as ``ipfs add --only-hash`` prints it), sha256 and size of a file or stream, in one pass."""
    result = _run(source, params or UnixfsParams(), True, config).finish()
    assert result.sha256 is not None
    return FileDigest(result.root, result.sha256, result.size)


def compute_cid(
    source: Path | BinaryIO, params: UnixfsParams | None = None, *, config: PipelineConfig | None = None
) -> tuple[CID, int]:
    """(CID, size) only, skipping the whole-file sha256: both cores go to chunk hashes."""
    result = _run(source, params or UnixfsParams(), False, config).finish()
    return result.root, result.size


def cid_text(
    source: Path | BinaryIO,
    params: UnixfsParams | None = None,
    *,
    file_sha256: bool = False,
    config: PipelineConfig | None = None,
) -> tuple[str, bytes | None, int]:
    """(CID as text, sha256 if ``file_sha256``, size): what ``modelpack cid`` prints, with no CID
    object built, so a short-lived process does not import multiformats."""
    root = _run(source, params or UnixfsParams(), file_sha256, config).finish_root()
    return cid_str(root.cid_bytes), root.sha256, root.size
