"""What a failed response says: an OpenAI-style error message, a ``Retry-After``, a Cloudflare block."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from .._transports.base import ResponseHead
from ..protocol.untrusted import json_or_none
from .bodies import EXCERPT

__all__ = ["error_message", "is_cloudflare_block", "retry_after"]

_CLOUDFLARE_MARKERS = (b"cloudflare", b"cf-chl", b"cf-ray")


def error_message(body: bytes) -> str | None:
    """The ``message`` of an OpenAI-style ``{"error": {...}}`` body (or its ``error`` string), if any."""
    value = json_or_none(body)
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (never negative), or None if it says nothing usable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def is_cloudflare_block(response: ResponseHead, body: bytes) -> bool:
    """Whether a 403/503 is a Cloudflare challenge or block page rather than the API's own answer."""
    # Every response through Cloudflare has a cf-ray header, an API's own errors too: only a
    # challenge header or an HTML page that names Cloudflare marks a block.
    if response.status_code not in (403, 503):
        return False
    if response.headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    head = body[:EXCERPT].lower()
    return head.lstrip()[:1] == b"<" and any(marker in head for marker in _CLOUDFLARE_MARKERS)
