"""``?model=ns/name``: which listing of a CID a ``/v1/packs/{cid}...`` route means when several models list it."""

from __future__ import annotations

from aiohttp import web

from registry.api import formats
from registry.api.endpoint import Param
from registry.names import ModelRef, parse_model_name

PACK_MODEL = Param(
    "model",
    "query",
    {"type": "string", "pattern": formats.MODEL_REF, "maxLength": 193},
    "ns/name: the model whose listing of the CID is meant (needed when several models list it: "
    "409 ambiguous_pack otherwise)",
)
AMBIGUOUS = 409  # ambiguous_pack: several models list the CID and no ?model chose one


def pack_model(request: web.Request) -> ModelRef | None:
    """The listing's model from ``?model=`` (None when absent); a malformed one is 400 invalid_name."""
    text = request.query.get("model")
    return None if text is None else parse_model_name(text)
