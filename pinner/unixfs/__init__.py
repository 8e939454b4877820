"""UnixFS files and directories with CIDs identical to Kubo's ``ipfs add``."""

from pinner.unixfs.directory import DEFAULT_DIRECTORY_MAX_ENTRIES, build_directory, hash_directory
from pinner.unixfs.hashing import FileDigest, cid_text, compute_cid, hash_file
from pinner.unixfs.params import PROFILES, UnixfsParams, params_for_cid
from pinner.unixfs.pipeline import BuildResult, ChunkPipeline, LeafRecord, PipelineConfig, RootDigest

__all__ = [
    "DEFAULT_DIRECTORY_MAX_ENTRIES",
    "PROFILES",
    "BuildResult",
    "ChunkPipeline",
    "FileDigest",
    "LeafRecord",
    "PipelineConfig",
    "RootDigest",
    "UnixfsParams",
    "build_directory",
    "cid_text",
    "compute_cid",
    "hash_directory",
    "hash_file",
    "params_for_cid",
]
