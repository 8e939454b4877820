"""The ModelPack manifest: its schema, limits, canonical (RFC 8785) bytes and pack CID, and registry names."""

from registry.manifest.canonical import (
    ManifestLimits,
    ParsedManifest,
    load_manifest,
    pack_cid_of,
    parse_json_strict,
    parse_manifest_bytes,
)
from registry.manifest.names import ModelRef, PackRef, check_name, check_tag, parse_model_name, parse_ref
from registry.manifest.schema import ManifestDoc, Provenance, ShardSpec

__all__ = [
    "ManifestDoc",
    "ManifestLimits",
    "ModelRef",
    "PackRef",
    "ParsedManifest",
    "Provenance",
    "ShardSpec",
    "check_name",
    "check_tag",
    "load_manifest",
    "pack_cid_of",
    "parse_json_strict",
    "parse_manifest_bytes",
    "parse_model_name",
    "parse_ref",
]
