"""Publish-time check of an ``hf-llama`` pack's ``config.json`` (issue #13): a config the core cannot express
(biases, short sliding windows, other rope scaling, non-SiLU activations...) is refused at publish, with the
sentence ``modelpack import hf`` gives, instead of being found later by the validation sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from model_core.errors import ModelCoreError
from model_core.format.errors import InvalidManifest
from model_core.format.hf_config import model_config_from_hf
from model_core.format.schema import ManifestDoc
from pinner.blockstore import FsBlockstore
from pinner.content_errors import BlockNotFound
from registry.db.models import Blob

HF_LAYOUT = "hf-llama"
CONFIG_FILE = "config.json"
CONFIG_MAX_BYTES = 1024 * 1024  # the loader reads no larger config.json either

# Reads a stored file's bytes (verified) by CID, or None when this registry does not hold it locally.
ReadStored = Callable[[str, int], bytes | None]


def check_hf_config(doc: ManifestDoc, blobs: Sequence[Blob | None], read: ReadStored | None) -> None:
    """Refuse an hf-llama manifest whose ``config.json`` is missing or names what the core cannot run.

    ``blobs`` are the stored blobs of the manifest's shards then files (None: to be fetched by CID; such a
    config is checked by the validation sandbox instead, which reads it from the same verified bytes).

    Raises:
        InvalidManifest: 422, one sentence naming the file, the field and its value.
    """
    if doc.layout != HF_LAYOUT:
        return
    files = list(doc.files or ())
    index = next((i for i, f in enumerate(files) if f.filename == CONFIG_FILE), None)
    if index is None:
        raise InvalidManifest(f"an {HF_LAYOUT} pack must list {CONFIG_FILE} under files", field="files")
    blob = blobs[len(doc.shards) + index]
    if blob is None or read is None:
        return
    if blob.size > CONFIG_MAX_BYTES:
        raise InvalidManifest(
            f"{CONFIG_FILE} is {blob.size} bytes, more than {CONFIG_MAX_BYTES}", field=f"files[{index}]"
        )
    raw = read(blob.cid, CONFIG_MAX_BYTES)
    if raw is None:
        return
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidManifest(f"{CONFIG_FILE} is not JSON: {e}", field=f"files[{index}]") from None
    try:
        model_config_from_hf(data, CONFIG_FILE)
    except ModelCoreError as e:
        raise InvalidManifest(e.message, field=f"files[{index}]") from None


def stored_reader(store: FsBlockstore) -> ReadStored:
    """Read a small stored file through the blockstore (every leaf verified), None when it is not here."""

    def read(cid: str, limit: int) -> bytes | None:
        try:
            if store.file_size(cid) > limit:
                return None
            return b"".join(store.iter_file_bytes(cid, 0, limit))
        except BlockNotFound:
            return None

    return read
