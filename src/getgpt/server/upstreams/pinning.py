"""The model of a forwarded request (``/v1/embeddings``, ``/v1/completions``, ``/v1/responses``):
the one its body names, which routes it, and the body sent to an upstream that knows that model
by another name -- ``--upstream-model``, an upstream's ``models`` table, an alias' target. A body
the server need not change goes on as the client's own bytes."""

from __future__ import annotations

import msgspec

from ...protocol.untrusted import NOT_JSON, decode_json

__all__ = ["model_in", "with_model"]


def model_in(body: bytes) -> str | None:
    """The ``model`` a forwarded request names (None when it names none, or is not JSON)."""
    try:
        fields = decode_json(body)
    except NOT_JSON:
        return None
    model = fields.get("model") if isinstance(fields, dict) else None
    return model if isinstance(model, str) else None


def with_model(body: bytes, model: str) -> bytes:
    """``body`` with its ``model`` replaced (or added); the bytes as they came when it is not a
    JSON object (the upstream says what is wrong with it)."""
    try:
        fields = decode_json(body)
    except NOT_JSON:
        return body
    if not isinstance(fields, dict):
        return body
    fields["model"] = model
    return msgspec.json.encode(fields)
