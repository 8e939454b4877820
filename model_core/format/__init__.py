"""The ModelPack format, torch-free: the one definition the registry and the loader share.

- ``model_core.format.errors``: InvalidManifest and ManifestTooLarge.
- ``model_core.format.digest``: Sha256Digest, the ``sha256:<hex>`` value type.
- ``model_core.format.fields``: the safe shard-filename rule, shard CIDs, UnixFS profile names.
- ``model_core.format.strict_json``: JSON decoding with no duplicate keys, no NaN, bounded size and depth.
- ``model_core.format.schema``: the manifest's pydantic schema (ShardSpec, FileSpec, Provenance, ManifestDoc
  with its optional ``files``, ``layout`` and ``evaluation``).
- ``model_core.format.evaluation``: the ``evaluation`` block (reference prompts, a perplexity ceiling) and
  its cross-field rules.
- ``model_core.format.fingerprint``: behavioural fingerprints (the fixed probes) and their comparison
  (top-1 agreement, mean KL), for the registry's drift policy and ``modelpack diff``.
- ``model_core.format.pack``: limits, validation, RFC 8785 canonical bytes and the pack CID.

Nothing here imports torch, safetensors or numpy (a test checks it), so the registry may import it.
"""
