"""The server's model choice on the forwarded routes (``/v1/embeddings``, ``/v1/completions``,
``/v1/responses``), as on chat: ``--upstream-model`` replaces whatever the client asked for (or
adds it when the client named none), else a ``--model-alias`` the client named becomes its
target. A body the server need not change goes on as the client's own bytes."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

__all__ = ["pinned_body"]

_decode_any = msgspec.json.Decoder().decode


def pinned_body(body: bytes, model: str | None, aliases: Mapping[str, str]) -> bytes:
    """``body`` with the model the server owns: ``model`` when given, else the target of the alias
    the body names; the bytes as they came when that changes nothing, or when the body is no JSON
    object (the upstream says what is wrong with it)."""
    if model is None and not aliases:
        return body
    try:
        fields = _decode_any(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return body
    if not isinstance(fields, dict):
        return body
    asked = fields.get("model")
    chosen = model if model is not None else aliases.get(asked) if isinstance(asked, str) else None
    if chosen is None or (chosen == asked and "model" in fields):
        return body
    fields["model"] = chosen
    return msgspec.json.encode(fields)
