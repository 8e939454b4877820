"""The transformer core, the safe pack loader, the smoke-test suite and its sandbox.

Importing this package does not import torch. Public entry points:

- ``model_core.format``: the ModelPack format (schema, limits, strict JSON, RFC 8785 bytes, pack CID,
  safe filenames, ``Sha256Digest``); torch-free, and the only part the registry imports.
- ``model_core.config.ModelConfig``: validated hyper-parameters (seed field names).
- ``model_core.model.Transformer``, ``model_core.generate.greedy_generate``: the model.
- ``model_core.loader.load_pack(pack_dir, LoaderConfig)``: verified, zero-copy loading.
- ``model_core.smoke.run_smoke(model, SmokeConfig)``: the smoke suite's JSON-ready report.
- ``python -m model_core.validate PACK_DIR --report OUT.json`` / ``model_core.sandbox.validate_pack``:
  the sandboxed gate check (torch-free supervisor).
- ``model_core.packbuild.write_pack`` and ``model_core.demo.demo_state_dict``: building packs.
"""
