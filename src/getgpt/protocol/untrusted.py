"""Decoding JSON that came from a peer, which may be anything.

msgspec raises three things on bytes it cannot read as JSON: :class:`msgspec.DecodeError` (not
JSON), :class:`UnicodeDecodeError` (invalid UTF-8 inside a string) and :class:`RecursionError`
(nested past its depth limit, ~1,000 levels). Every reader of a peer's JSON catches all three:
:data:`NOT_JSON` names them once.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["NOT_JSON", "decode_json", "json_or_none"]

#: What decoding a peer's bytes as JSON may raise.
NOT_JSON = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
#: Any JSON value, untyped.
decode_json = msgspec.json.Decoder().decode


def json_or_none(data: bytes | str) -> Any:
    """``data`` decoded, or None when it is not JSON (JSON's ``null`` is None too: callers look for
    the type they need)."""
    try:
        return decode_json(data)
    except NOT_JSON:
        return None
