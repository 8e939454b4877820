"""Schemathesis hooks for the registry API (``SCHEMATHESIS_HOOKS=tests.registry.api.schemathesis_hooks``).

One hook, and a narrow one, on the positive-data check only: a schema-valid request may still be refused for a reason no JSON Schema can
state, and the API says which in the error it returns. Only these refusals are dropped, each by its
operation and error; every other finding stands.

- a cursor this API did not issue (opaque: the form is documented, the content is the server's);
- shard bytes that do not hash to the CID (or the ``sha256``) the upload names;
- an IPNS record that does not verify (the validator's answer is the point of that operation);
- a signing key that is a weak point, or registered without a valid signature over a live challenge;
- a manifest whose ``model_name`` is not the model it is published as;
- a manifest naming one shard filename twice, or whose shard sizes add up past ``pack_max_bytes``;
- a manifest whose ``evaluation`` or ``files`` break a cross-field rule (a prompt longer than the context,
  a tokenizer or reference file not in ``files``, an ``hf-llama`` pack without ``config.json``);
- a manifest number written with a fraction where an integer goes (``5.0``: JSON Schema's ``integer``
  takes it, the strict manifest loader does not).

And on both data checks: 413 for a body over its byte limit (no JSON Schema keyword counts bytes).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData, Failure
from schemathesis.openapi.checks import RejectedPositiveData

SEMANTIC = {
    "putBlob": {"digest_mismatch"},
    # the manifest's model_name must name the path's ns/model (an equality no JSON Schema can state)
    "publishPack": {"model_name_mismatch"},
    "validateIpnsRecord": {"invalid_ipns_record", "ipns_sequence_not_newer"},
    # a key must be a safe point (not small-order) and come with its signature over a live challenge
    "keyChallenge": {"bad_public_key"},
    "registerKey": {"bad_public_key", "key_proof_invalid"},
}


def _error(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def is_semantic_refusal(operation_id: str, status: int, error: dict[str, Any]) -> bool:
    """True for the refusals the module docstring lists."""
    code, details = error.get("code"), error.get("details") or {}
    message = str(error.get("message", ""))
    if status == 400 and code == "bad_request" and "cursor" in details:
        return True
    if code in SEMANTIC.get(operation_id, ()):
        return True
    return (
        operation_id == "publishPack"
        and code == "invalid_manifest"
        and (
            "is listed twice" in message
            or message.startswith("the pack is ")
            or message.endswith("Input should be a valid integer")
            # cross-field rules no JSON Schema states: evaluation prompts vs the config, files vs layout
            or str(details.get("field", "")).startswith(("evaluation", "files"))
            or "must list config.json" in message
        )
    )


@schemathesis.hook
def filter_failure(ctx: Any, failure: Failure, case: Any, response: Any) -> bool:
    error = _error(response)
    if isinstance(failure, (RejectedPositiveData, AcceptedNegativeData)) and error.get("code") == (
        "payload_too_large"
    ):
        return False
    if not isinstance(failure, RejectedPositiveData):
        return True
    op_id = case.operation.definition.raw.get("operationId", "")
    return not is_semantic_refusal(op_id, response.status_code, error)
